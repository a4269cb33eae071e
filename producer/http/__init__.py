"""An HTTP server speaking the part of the OpenAI API that Batch API users call.

Code written for OpenAI's Batch API (files, batches, their output and error files)
and for chat completions runs against this service by changing ``base_url``: the
routes, the objects and the error bodies are OpenAI's shapes. ``chatgptes serve``
runs it; ``producer.http.app.make_app`` builds it.
"""
