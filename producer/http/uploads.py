"""An upload to ``POST /v1/files``: its multipart form read within limits, into Redis.

The file part is written to Redis as it arrives (``producer.http.files.StagedFile``),
so an upload costs the server a megabyte or so whatever its size. The size limit is
enforced before and while reading: a ``Content-Length`` over it is refused unread, and
reading stops as soon as the file part passes it. The file's lines are not checked
here: as at OpenAI, an upload is stored as it is, and a batch made from it fails
listing its bad lines (``producer.http.batch_routes`` checks them then). A body that is not a
readable multipart form is a 400 naming what is wrong, never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from producer.http.errors import ApiError, invalid, too_large
from producer.http.files import StagedFile
from producer.http.settings import ApiSettings

MULTIPART_SLACK = 64 * 1024  # boundaries, part headers and the small fields beside the file
FIELD_LIMIT = 1024
READ_BYTES = 64 * 1024
PURPOSE = "batch"
ANCHOR, SECONDS = "expires_after[anchor]", "expires_after[seconds]"
SMALL_FIELDS = frozenset({"purpose", ANCHOR, SECONDS})
EXPIRES_AFTER_RANGE = (3600, 30 * 24 * 3600)  # OpenAI's: one hour to 30 days


@dataclass(frozen=True)
class Upload:
    filename: str
    purpose: str
    ttl_seconds: int


async def read_upload(request: web.Request, settings: ApiSettings, staged: StagedFile) -> Upload:
    """The form's fields, its file written to ``staged``; 413 over ``max_input_bytes``, 400
    for a bad form."""
    limit = settings.max_input_bytes
    if request.content_length is not None and request.content_length > limit + MULTIPART_SLACK:
        raise _too_large(limit, request.content_length)
    if request.content_type != "multipart/form-data":
        raise invalid("Upload a file as multipart/form-data with the fields 'file' and "
                      "'purpose'.", param="file")  # fmt: skip
    try:
        fields, filename = await _read_form(request, limit, staged)
    except HttpProcessingError:  # a part's header line past aiohttp's 8 KiB (LineTooLong)
        raise invalid("The multipart form could not be read: a part's header is longer than "
                      "8 KiB (a file name that long?).",
                      code="invalid_multipart") from None  # fmt: skip
    except (ValueError, AssertionError, LookupError) as error:  # aiohttp's words for a bad form
        raise invalid(f"The multipart form could not be read: {str(error)[:200]}.",
                      code="invalid_multipart") from None  # fmt: skip
    if "purpose" not in fields:
        raise invalid("Missing required parameter: 'purpose'.", param="purpose",
                      code="missing_required_parameter")  # fmt: skip
    _check_purpose(fields["purpose"])
    if filename is None:
        raise invalid("Missing required parameter: 'file'.", param="file",
                      code="missing_required_parameter")  # fmt: skip
    return Upload(filename, fields["purpose"], _ttl(fields, settings.file_ttl_seconds))


async def _read_form(
    request: web.Request, limit: int, staged: StagedFile
) -> tuple[dict[str, str], str | None]:
    reader = await request.multipart()
    fields: dict[str, str] = {}
    filename: str | None = None
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            raise invalid("a nested or unnamed multipart part is not a form field")
        if part.name == "file" and filename is None:
            filename = (part.filename or "upload.jsonl")[:255]
            await _write(part, limit, staged)
        elif part.name in SMALL_FIELDS and part.name not in fields:
            fields[part.name] = (await _read(part, FIELD_LIMIT)).decode(errors="replace")
            if part.name == "purpose":
                _check_purpose(fields["purpose"])  # refused before the file is read
        else:
            raise invalid(f"Unrecognized request argument supplied: {part.name}",
                          param=part.name, code="unknown_parameter")  # fmt: skip
    return fields, filename


async def _write(part: BodyPartReader, limit: int, staged: StagedFile) -> None:
    """The file part into ``staged``, refused (413) as soon as it passes ``limit``."""
    while piece := await part.read_chunk(READ_BYTES):
        if staged.size + len(piece) > limit:
            raise _too_large(limit, None)
        await staged.write(piece)


async def _read(part: BodyPartReader, limit: int) -> bytes:
    """A small field's bytes, refused as soon as they pass ``limit``: never more is read."""
    pieces: list[bytes] = []
    size = 0
    while piece := await part.read_chunk(READ_BYTES):
        size += len(piece)
        if size > limit:
            raise invalid(f"the field {part.name!r} is longer than {limit} bytes", param=part.name)
        pieces.append(piece)
    return b"".join(pieces)


def _check_purpose(purpose: str) -> None:
    if purpose != PURPOSE:
        raise invalid(
            f"Invalid value for 'purpose': {purpose!r}. This service runs batches only: "
            f"the purpose must be '{PURPOSE}'.", param="purpose", code="invalid_value",
        )  # fmt: skip


def _ttl(fields: dict[str, str], default: int) -> int:
    """OpenAI's ``expires_after`` (anchor ``created_at``, 1 hour to 30 days), else ``default``."""
    if ANCHOR not in fields and SECONDS not in fields:
        return default
    low, high = EXPIRES_AFTER_RANGE
    if fields.get(ANCHOR) != "created_at":
        raise invalid("expires_after[anchor] must be 'created_at'", param="expires_after")
    seconds = fields.get(SECONDS, "")
    if not seconds.isdigit() or not low <= int(seconds) <= high:
        raise invalid(f"expires_after[seconds] must be an integer from {low} to {high}",
                      param="expires_after")  # fmt: skip
    return int(seconds)


def _too_large(limit: int, size: int | None) -> ApiError:
    what = f"The upload is {size:,} bytes" if size is not None else "The file is over the limit"
    return too_large(
        f"{what}; the limit is {limit:,} bytes (CHATGPTES_MAX_INPUT_BYTES). "
        "Split the file into smaller batches."
    )
