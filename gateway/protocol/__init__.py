"""Sans-IO codec for the Kafka wire protocol.

    reader = FrameReader()
    for frame in reader.feed(data):
        request = decode_request(frame)
        ...
        transport.write(encode_response(request.api_key, request.api_version,
                                        request.correlation_id, {"error_code": 0, ...}))
"""

from .codec import (
    Request,
    Response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from .errors import ErrorCode
from .exceptions import (
    EncodeError,
    FrameTooLarge,
    MalformedFrame,
    ProtocolError,
    UnknownApiKey,
    UnsupportedVersion,
)
from .framing import FrameReader
from .headers import request_header_version, response_header_version
from .messages import API_NAMES, SUPPORTED_VERSIONS, ApiKey

__all__ = [
    "API_NAMES",
    "SUPPORTED_VERSIONS",
    "ApiKey",
    "EncodeError",
    "ErrorCode",
    "FrameReader",
    "FrameTooLarge",
    "MalformedFrame",
    "ProtocolError",
    "Request",
    "Response",
    "UnknownApiKey",
    "UnsupportedVersion",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "request_header_version",
    "response_header_version",
]
