"""Sends one shared client/server span as Zipkin v1 Thrift, encoded by thriftpy2 from
zipkinCore.thrift, for the Zipkin v1 end-to-end test (tests/it/zipkin_v1.rs).

    python send_zipkin_thrift.py --url http://127.0.0.1:9411/api/v1/spans \
        --trace-id HEX16 --id HEX16 --parent-id HEX16 --timestamp MICROS \
        --client NAME --server NAME

The span is a list of one span in TBinaryProtocol, as Thrift reporters post it: the
client's cs/cr and an annotation between, the server's sr/ss, a string tag, an error
tag and the server's address (`sa`) logged by the server, and an empty `lc` marker.
Prints one JSON object on stdout: the HTTP status and body of the answer. Exits
non-zero when the request cannot be made.
"""

import argparse
import io
import json
import os
import struct
import sys
import urllib.error
import urllib.request

import thriftpy2
from thriftpy2.protocol.binary import write_val
from thriftpy2.thrift import TType

HERE = os.path.dirname(os.path.abspath(__file__))
zipkin = thriftpy2.load(os.path.join(HERE, "zipkinCore.thrift"), module_name="zipkinCore_thrift")


def signed(hex_id):
    """A 64-bit id in hex as Thrift's i64."""
    return struct.unpack(">q", bytes.fromhex(hex_id))[0]


def main():
    parser = argparse.ArgumentParser()
    for flag in ("--url", "--trace-id", "--id", "--parent-id", "--client", "--server"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--timestamp", type=int, required=True)
    args = parser.parse_args()
    ts = args.timestamp

    client = zipkin.Endpoint(service_name=args.client)
    server = zipkin.Endpoint(
        service_name=args.server,
        ipv4=struct.unpack(">i", bytes([192, 168, 99, 1]))[0],
        port=3306,
    )

    def annotation(at, value, host):
        return zipkin.Annotation(timestamp=at, value=value, host=host)

    def tag(key, value, kind, host):
        return zipkin.BinaryAnnotation(key=key, value=value, annotation_type=kind, host=host)

    span = zipkin.Span(
        trace_id=signed(args.trace_id),
        id=signed(args.id),
        parent_id=signed(args.parent_id),
        name="Get /Api",
        timestamp=ts,
        duration=2100,
        debug=False,
        annotations=[
            annotation(ts, "cs", client),
            annotation(ts + 50, "retry", client),
            annotation(ts + 100, "sr", server),
            annotation(ts + 1531, "ss", server),
            annotation(ts + 2000, "cr", client),
        ],
        binary_annotations=[
            tag("http.path", b"/api", zipkin.AnnotationType.STRING, server),
            tag("error", b"true", zipkin.AnnotationType.STRING, server),
            tag("sa", b"\x01", zipkin.AnnotationType.BOOL, server),
            tag("lc", b"", zipkin.AnnotationType.STRING, client),
        ],
    )
    out = io.BytesIO()
    write_val(out, TType.LIST, [span], (TType.STRUCT, zipkin.Span))
    body = out.getvalue()

    request = urllib.request.Request(
        args.url,
        data=body,
        headers={"Content-Type": "application/x-thrift"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as reply:
            status, text = reply.status, reply.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode("utf-8", "replace")
    json.dump({"status": status, "body": text, "bytes": len(body)}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
