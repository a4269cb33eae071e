from chatgptes.cli import main

main()
