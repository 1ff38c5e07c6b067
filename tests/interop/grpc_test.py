#!/usr/bin/env python3
"""Interop test: drive idnode's gRPC API with the reference Python client (grpcio).

    python tests/interop/grpc_test.py --grpc 127.0.0.1:PORT --prefix 88.101.5 \
        --token-file PATH --proto-dir proto

Needs `grpcio` and `grpcio-tools` (tested with 1.85: `pip install 'grpcio==1.85.*'
'grpcio-tools==1.85.*'`); `grpcio-reflection` is used when installed, otherwise the few
reflection messages needed are encoded by hand. Stubs are generated from the committed
proto files into a temporary directory with grpc_tools.protoc.

Checks: server reflection (v1) lists idnode.v1.Resolver and idnode.v1.Registry and serves
the Registry descriptor; Registry/Register with a bearer token creates PREFIX/GRPCIO-<random>
(registered = true); anonymous Resolver/Resolve returns the URL; an identical Register is
idempotent (registered = false); resolving an absent identifier is NOT_FOUND; Register without
a token is UNAUTHENTICATED. The record is deleted at the end (best effort).

Exit status 0 when every step passed, 1 on the first failure.
"""

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import traceback
import uuid

try:
    import grpc
    from grpc_tools import protoc
except ImportError as exc:  # pragma: no cover
    print("FAIL: grpcio and grpcio-tools are required (pip install grpcio grpcio-tools): %s" % exc)
    sys.exit(1)

PROTO_FILES = ["types", "resolver", "registry", "admin", "toplevel"]
REFLECTION_V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
REFLECTION_V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
TIMEOUT = 15.0


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def step(text):
    print("==> " + text, flush=True)


def ok(text):
    print("    ok: " + text, flush=True)


def dist_version(name, fallback):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return fallback


def generate_stubs(proto_dir, out_dir):
    for name in PROTO_FILES:
        path = os.path.join(proto_dir, "idnode", "v1", name + ".proto")
        check(os.path.isfile(path), "proto file missing: %s" % path)
    args = ["grpc_tools.protoc", "-I" + proto_dir,
            "-I" + os.path.join(os.path.dirname(protoc.__file__), "_proto"),
            "--python_out=" + out_dir, "--grpc_python_out=" + out_dir]
    args += [os.path.join(proto_dir, "idnode", "v1", n + ".proto") for n in PROTO_FILES]
    rc = protoc.main(args)
    check(rc == 0, "grpc_tools.protoc failed with status %s" % rc)
    sys.path.insert(0, out_dir)
    mods = {}
    for name in PROTO_FILES:
        mods[name] = importlib.import_module("idnode.v1.%s_pb2" % name)
        mods[name + "_grpc"] = importlib.import_module("idnode.v1.%s_pb2_grpc" % name)
    return mods


# --- server reflection ------------------------------------------------------------------
# grpcio-reflection ships only v1alpha message classes; v1 messages are wire-identical, so
# they are sent on the v1 method path. Without grpcio-reflection, a tiny hand codec is used.

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _fields(buf):
    """Yield (field_number, wire_type, value) of a protobuf message (varint and bytes only)."""
    i = 0
    while i < len(buf):
        key, shift = 0, 0
        while True:
            b = buf[i]; i += 1
            key |= (b & 0x7F) << shift; shift += 7
            if not b & 0x80:
                break
        field, wt = key >> 3, key & 7
        if wt == 0:
            val, shift = 0, 0
            while True:
                b = buf[i]; i += 1
                val |= (b & 0x7F) << shift; shift += 7
                if not b & 0x80:
                    break
            yield field, wt, val
        elif wt == 2:
            ln, shift = 0, 0
            while True:
                b = buf[i]; i += 1
                ln |= (b & 0x7F) << shift; shift += 7
                if not b & 0x80:
                    break
            yield field, wt, buf[i:i + ln]
            i += ln
        elif wt == 1:
            yield field, wt, buf[i:i + 8]; i += 8
        elif wt == 5:
            yield field, wt, buf[i:i + 4]; i += 4
        else:
            raise ValueError("unsupported wire type %d" % wt)


class RawReflection:
    """ServerReflectionRequest/Response handling without grpcio-reflection."""

    @staticmethod
    def list_services_request():
        return b"\x3a\x00"  # field 7 list_services = ""

    @staticmethod
    def symbol_request(symbol):
        s = symbol.encode()
        return b"\x22" + _varint(len(s)) + s  # field 4 file_containing_symbol

    @staticmethod
    def filename_request(name):
        s = name.encode()
        return b"\x1a" + _varint(len(s)) + s  # field 3 file_by_filename

    @staticmethod
    def parse(resp_bytes):
        """-> (services, file_descriptor_protos, error)"""
        services, files, error = [], [], None
        for f, _, v in _fields(resp_bytes):
            if f == 6:  # list_services_response
                for f2, _, svc in _fields(v):
                    if f2 == 1:
                        for f3, _, name in _fields(svc):
                            if f3 == 1:
                                services.append(name.decode())
            elif f == 4:  # file_descriptor_response
                for f2, _, fd in _fields(v):
                    if f2 == 1:
                        files.append(bytes(fd))
            elif f == 7:  # error_response
                code, msg = 0, ""
                for f2, _, x in _fields(v):
                    if f2 == 1:
                        code = x
                    elif f2 == 2:
                        msg = x.decode()
                error = (code, msg)
        return services, files, error


def reflection_call(channel, method, requests_bytes):
    call = channel.stream_stream(method, request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)
    return [RawReflection.parse(r) for r in call(iter(requests_bytes), timeout=TIMEOUT)]


def reflection_requests(symbol):
    """Encoded list_services + file_containing_symbol requests (grpcio-reflection if present)."""
    try:
        from grpc_reflection.v1alpha import reflection_pb2 as rpb
        return [rpb.ServerReflectionRequest(list_services="").SerializeToString(),
                rpb.ServerReflectionRequest(file_containing_symbol=symbol).SerializeToString()], \
            "grpcio-reflection %s messages" % dist_version("grpcio-reflection", "?")
    except ImportError:
        return [RawReflection.list_services_request(), RawReflection.symbol_request(symbol)], \
            "hand-encoded messages (grpcio-reflection not installed)"


def filename_request(name):
    try:
        from grpc_reflection.v1alpha import reflection_pb2 as rpb
        return rpb.ServerReflectionRequest(file_by_filename=name).SerializeToString()
    except ImportError:
        return RawReflection.filename_request(name)


def check_reflection(channel):
    reqs, how = reflection_requests("idnode.v1.Registry")
    step("server reflection v1 (%s): list services, file_containing_symbol idnode.v1.Registry" % how)
    try:
        answers = reflection_call(channel, REFLECTION_V1, reqs)
    except grpc.RpcError as err:
        raise Failure("reflection v1 call failed: %s %s" % (err.code(), err.details()))
    check(len(answers) == 2, "expected 2 reflection responses, got %d" % len(answers))
    services = answers[0][0]
    check(answers[0][2] is None, "list_services error: %r" % (answers[0][2],))
    for svc in ("idnode.v1.Resolver", "idnode.v1.Registry"):
        check(svc in services, "%s missing from reflection list %r" % (svc, services))
    ok("services: %s" % ", ".join(sorted(services)))

    files, error = answers[1][1], answers[1][2]
    check(error is None, "file_containing_symbol error: %r" % (error,))
    check(files, "no file descriptors for idnode.v1.Registry")
    from google.protobuf import descriptor_pb2
    methods = None
    names = []
    for raw in files:
        fdp = descriptor_pb2.FileDescriptorProto.FromString(raw)
        names.append(fdp.name)
        for svc in fdp.service:
            if fdp.package == "idnode.v1" and svc.name == "Registry":
                methods = [m.name for m in svc.method]
    check(methods is not None, "descriptor of idnode.v1.Registry not among %r" % names)
    ok("descriptors %s; Registry methods: %s" % (", ".join(names), ", ".join(methods)))
    # Dependencies not sent along must be fetchable by file name (what grpcurl does).
    missing = sorted({d for raw in files
                      for d in descriptor_pb2.FileDescriptorProto.FromString(raw).dependency} - set(names))
    if missing:
        dep_answers = reflection_call(channel, REFLECTION_V1, [filename_request(n) for n in missing])
        for name, (_, dep_files, dep_error) in zip(missing, dep_answers):
            check(dep_error is None and dep_files, "file_by_filename %s failed: %r" % (name, dep_error))
            got = [descriptor_pb2.FileDescriptorProto.FromString(r).name for r in dep_files]
            check(name in got, "file_by_filename %s returned %r" % (name, got))
        ok("dependencies fetched by file name: %s" % ", ".join(missing))
    check("Register" in methods, "Registry methods %r lack Register" % methods)

    # Informational: older clients (grpcurl before 1.8.8, grpcio-reflection) speak v1alpha.
    try:
        alpha = reflection_call(channel, REFLECTION_V1ALPHA, reqs[:1])
        print("    note: reflection v1alpha also served (%d services)" % len(alpha[0][0]), flush=True)
    except grpc.RpcError as err:
        print("    note: reflection v1alpha not served (%s)" % err.code().name, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grpc", required=True, help="node gRPC address host:port, e.g. 127.0.0.1:7000")
    ap.add_argument("--prefix", required=True, help="enterprise prefix, e.g. 88.101.5")
    ap.add_argument("--token-file", required=True, help="file holding the enterprise token")
    ap.add_argument("--proto-dir", default="proto", help="directory holding idnode/v1/*.proto")
    args = ap.parse_args()

    print("grpcio %s" % dist_version("grpcio", grpc.__version__), flush=True)
    print("grpcio-tools %s, protobuf %s" % (dist_version("grpcio-tools", "?"),
                                            dist_version("protobuf", "?")), flush=True)

    with open(args.token_file, encoding="utf-8") as f:
        token = f.read().strip()
    tmp = tempfile.mkdtemp(prefix="idnode-grpc-stubs-")
    identifier = "%s/GRPCIO-%s" % (args.prefix, uuid.uuid4().hex[:12].upper())
    url = b"https://example.cn/x"
    auth = (("authorization", "Bearer " + token),)
    registry = None
    created = False
    try:
        check(token, "token file %s is empty" % args.token_file)
        step("generate stubs from %s into %s" % (args.proto_dir, tmp))
        m = generate_stubs(args.proto_dir, tmp)
        types, res, reg = m["types"], m["resolver"], m["registry"]
        ok("generated %s" % ", ".join(n + "_pb2" for n in PROTO_FILES))

        channel = grpc.insecure_channel(args.grpc)
        try:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        except grpc.FutureTimeoutError:
            raise Failure("cannot connect to %s" % args.grpc)

        check_reflection(channel)

        registry = m["registry_grpc"].RegistryStub(channel)
        resolver = m["resolver_grpc"].ResolverStub(channel)
        record = types.Record(identifier=identifier, values=[
            types.Value(index=1, type="URL", data=url)])

        step("Registry/Register %s (bearer token)" % identifier)
        resp = registry.Register(reg.RegisterRequest(record=record), metadata=auth, timeout=TIMEOUT)
        created = True
        check(resp.registered is True, "registered = %r, expected True" % resp.registered)
        ok("registered = True")

        step("Resolver/Resolve %s (anonymous)" % identifier)
        resp = resolver.Resolve(res.ResolveRequest(identifier=identifier), timeout=TIMEOUT)
        urls = [(v.index, v.data) for v in resp.values if v.type == "URL"]
        check(urls == [(1, url)], "URL values %r, expected [(1, %r)]" % (urls, url))
        check(resp.identifier.lower() == identifier.lower(),
              "identifier %r != %r" % (resp.identifier, identifier))
        ok("URL %s at index 1 (ttl %d, timestamp %d)" % (
            url.decode(), resp.values[0].ttl, resp.values[0].timestamp))

        step("Resolver/Resolve with types=[URL] filter")
        resp = resolver.Resolve(res.ResolveRequest(identifier=identifier, types=["URL"]), timeout=TIMEOUT)
        check([v.data for v in resp.values] == [url], "filtered resolve returned %r" % list(resp.values))
        ok("one URL value")

        step("Registry/Register again with identical content (idempotent)")
        resp = registry.Register(reg.RegisterRequest(record=record), metadata=auth, timeout=TIMEOUT)
        check(resp.registered is False, "registered = %r, expected False" % resp.registered)
        ok("registered = False")

        missing = "88.101.5/DOES-NOT-EXIST-xyz"
        step("Resolver/Resolve %s -> NOT_FOUND" % missing)
        try:
            resolver.Resolve(res.ResolveRequest(identifier=missing), timeout=TIMEOUT)
        except grpc.RpcError as err:
            check(err.code() == grpc.StatusCode.NOT_FOUND,
                  "expected NOT_FOUND, got %s: %s" % (err.code(), err.details()))
            ok("NOT_FOUND (%s)" % err.details())
        else:
            raise Failure("Resolve of %s succeeded" % missing)

        step("Registry/Register without a token -> UNAUTHENTICATED")
        anon = types.Record(identifier=identifier + "-ANON", values=[
            types.Value(index=1, type="URL", data=url)])
        try:
            registry.Register(reg.RegisterRequest(record=anon), timeout=TIMEOUT)
        except grpc.RpcError as err:
            check(err.code() == grpc.StatusCode.UNAUTHENTICATED,
                  "expected UNAUTHENTICATED, got %s: %s" % (err.code(), err.details()))
            ok("UNAUTHENTICATED (%s)" % err.details())
        else:
            raise Failure("anonymous Register succeeded")

        step("Registry/Delete %s (cleanup)" % identifier)
        registry.Delete(reg.DeleteRequest(identifier=identifier), metadata=auth, timeout=TIMEOUT)
        created = False
        try:
            resolver.Resolve(res.ResolveRequest(identifier=identifier), timeout=TIMEOUT)
        except grpc.RpcError as err:
            check(err.code() == grpc.StatusCode.NOT_FOUND,
                  "after Delete expected NOT_FOUND, got %s" % err.code())
        else:
            raise Failure("identifier still resolves after Delete")
        ok("deleted; now NOT_FOUND")
        channel.close()
    except Failure as exc:
        print("FAIL: %s" % exc, flush=True)
        return 1
    except grpc.RpcError as err:
        print("FAIL: unexpected RPC error %s: %s" % (err.code(), err.details()), flush=True)
        return 1
    except Exception as exc:
        traceback.print_exc()
        print("FAIL: unexpected %s: %s" % (type(exc).__name__, exc), flush=True)
        return 1
    finally:
        if created and registry is not None:
            try:
                registry.Delete(reg.DeleteRequest(identifier=identifier), metadata=auth, timeout=TIMEOUT)
            except Exception:
                pass
        shutil.rmtree(tmp, ignore_errors=True)

    print("PASS: grpcio interop", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
