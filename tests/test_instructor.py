"""instructor (``from_openai(client)``) against ``chatgptes serve``, a real worker and the
simulator, in its default mode (``Mode.TOOLS``: a named function whose arguments are the
model), in ``TOOLS_STRICT``, ``PARALLEL_TOOLS`` and ``RESPONSES_TOOLS``, and in
``Mode.JSON`` and ``MD_JSON`` (the schema written in the prompt).

Every instructor release pins ``jiter<0.15``, which would hold the ``openai`` SDK of the
dev extra back at 3.3, so instructor is not in the dev extra: where it is not importable,
it is installed beside the venv (``.venv/instructor``, without its dependencies: the
venv has those but jiter, and instructor runs with the newer jiter), once; where pip
cannot, the tests skip and say why.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests.api_fleet import api_fleet

pytestmark = pytest.mark.e2e
KEY = "sk-instructor-0123456789abc"
PACKAGES = (
    "instructor>=1.17,<2",
    "docstring-parser>=0.16",
)  # what instructor needs beyond the venv
SIDE_DIR = Path(__file__).resolve().parent.parent / ".venv" / "instructor"


@pytest.fixture(scope="module")
def instructor() -> ModuleType:
    try:
        return importlib.import_module("instructor")
    except ImportError:
        pass
    if not (SIDE_DIR / "instructor").is_dir():
        installed = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
             str(SIDE_DIR), *PACKAGES],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if installed.returncode != 0:
            pytest.skip(f"pip could not install instructor: {installed.stderr[-300:]}")
    sys.path.append(str(SIDE_DIR))
    return importlib.import_module("instructor")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[OpenAI]:
    with api_fleet(tmp_path_factory.mktemp("instructor"), redis_server, KEY) as (base_url, _):
        yield OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=60)


class Address(BaseModel):
    city: str
    zip_code: str


class Person(BaseModel):
    name: str
    age: int
    address: Address
    nicknames: list[str]


EXPECTED = Person(name="echo", age=1, address=Address(city="echo", zip_code="echo"),
                  nicknames=["echo"])  # fmt: skip
ASK = [{"role": "user", "content": "Ada Lovelace, 36, lives at 12 St James's Square, London."}]


# instructor 1.17 deprecates TOOLS_STRICT (for TOOLS), and warns; code using it still runs.
@pytest.mark.filterwarnings("ignore:Mode.TOOLS_STRICT is deprecated")
@pytest.mark.parametrize("mode", ["default", "TOOLS_STRICT", "JSON", "MD_JSON", "RESPONSES_TOOLS"])
def test_instructor_extracts_a_model(instructor: ModuleType, client: OpenAI, mode: str) -> None:
    if mode == "default":
        patched = instructor.from_openai(client)
        assert patched.mode == instructor.Mode.TOOLS
    else:
        patched = instructor.from_openai(client, mode=getattr(instructor.Mode, mode))
    person = patched.create(model="gpt-4o-mini", response_model=Person, messages=ASK,
                            max_retries=0)  # fmt: skip
    assert person.model_dump() == EXPECTED.model_dump()


class Weather(BaseModel):
    city: str


class Time(BaseModel):
    zone: str


def test_instructor_parallel_tools(instructor: ModuleType, client: OpenAI) -> None:
    patched = instructor.from_openai(client, mode=instructor.Mode.PARALLEL_TOOLS)
    found = patched.chat.completions.create(
        model="gpt-4o", response_model=Iterable[Weather | Time], max_retries=0,
        messages=[{"role": "user", "content": "Use Weather and Time for Paris."}],
    )  # fmt: skip
    assert [item.model_dump() for item in found] == [{"city": "echo"}, {"zone": "echo"}]
