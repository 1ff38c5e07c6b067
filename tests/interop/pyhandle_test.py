#!/usr/bin/env python3
"""Interop test: drive idnode's Handle-compatible REST API (`/api/handles`) with pyhandle.

    python tests/interop/pyhandle_test.py --http http://127.0.0.1:PORT \
        --prefix 88.101.5 --token-file PATH

Needs only the standard library and `pyhandle` (tested with pyhandle 1.5.0:
`pip install pyhandle==1.5.0`). The token file holds the secret of the enterprise that owns
PREFIX; pyhandle sends it as the password of HTTP Basic user `300:PREFIX/ADMIN`.

What pyhandle 1.5.0 requires of the server (read from its source):
  * Construction GETs `/api/handles/PREFIX/ADMIN` WITHOUT credentials (pyhandle never sends
    Authorization on GET) and needs 200 + {"responseCode": 1, "handle": "PREFIX/ADMIN", ...};
    it checks nothing inside the record (no HS_SECKEY, no HS_ADMIN).
  * Every GET it makes is anonymous; values must carry "timestamp" (modify pops it) and
    "data" must be {"format": ..., "value": ...}.
  * Every PUT/DELETE response must be JSON with "responseCode" and "handle" (also 404s).
The node makes PREFIX/ADMIN for every enterprise; this script only checks that it is there.

Exit status 0 when every step passed, 1 on the first failure.
"""

import argparse
import json
import sys
import traceback
import urllib.error
import urllib.request
import uuid

try:
    from importlib.metadata import version as _dist_version
except ImportError:  # Python < 3.8
    _dist_version = None

try:
    import pyhandle
    from pyhandle.handleclient import PyHandleClient
    from pyhandle.handleexceptions import (
        HandleAlreadyExistsException,
        HandleAuthenticationError,
        HandleNotFoundException,
        PyhandleBaseException,
    )
except ImportError as exc:  # pragma: no cover
    print("FAIL: pyhandle is not installed (pip install pyhandle==1.5.0): %s" % exc)
    sys.exit(1)


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def step(text):
    print("==> " + text, flush=True)


def ok(text):
    print("    ok: " + text, flush=True)


def pyhandle_version():
    if _dist_version is not None:
        try:
            return _dist_version("pyhandle")
        except Exception:
            pass
    return getattr(pyhandle, "__version__", "unknown")


def values_by_type(record):
    """{type: [value, ...]} from a Handle REST JSON record."""
    out = {}
    for v in record.get("values", []):
        data = v.get("data")
        value = data.get("value") if isinstance(data, dict) else data
        out.setdefault(v.get("type"), []).append((v.get("index"), value))
    return out


def admin_handle_exists(base_url, admin):
    """The node makes PREFIX/ADMIN for every enterprise: an anonymous GET finds its HS_ADMIN."""
    url = base_url.rstrip("/") + "/api/handles/" + admin
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            status, text = resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode("utf-8", "replace")
    check(status == 200, "GET %s answered HTTP %s: %s" % (url, status, text))
    body = json.loads(text)
    types = [v["type"] for v in body["values"]]
    check(types == ["HS_ADMIN"], "anonymous GET %s shows %s (expected HS_ADMIN only)" % (url, types))
    ok("GET /api/handles/%s -> %s" % (admin, text.strip()[:200]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--http", required=True, help="node REST base URL, e.g. http://127.0.0.1:7080")
    ap.add_argument("--prefix", required=True, help="enterprise prefix, e.g. 88.101.5")
    ap.add_argument("--token-file", required=True, help="file holding the enterprise token")
    args = ap.parse_args()

    print("pyhandle %s" % pyhandle_version(), flush=True)

    with open(args.token_file, encoding="utf-8") as f:
        token = f.read().strip()
    check(token, "token file %s is empty" % args.token_file)

    base = args.http.rstrip("/")
    prefix = args.prefix
    admin_handle = prefix + "/ADMIN"
    username = "300:" + admin_handle
    suffix = "PYHANDLE-" + uuid.uuid4().hex[:12].upper()
    handle = prefix + "/" + suffix
    location = "https://example.cn/pyhandle/" + suffix
    checksum1 = "md5:" + uuid.uuid4().hex
    checksum2 = "sha256:" + uuid.uuid4().hex + uuid.uuid4().hex
    email = "pyhandle-test@example.cn"
    created = False
    client = None

    try:
        step("the node serves the admin handle %s (nobody created it)" % admin_handle)
        admin_handle_exists(base, admin_handle)

        step("construct pyhandle REST client as %s (GETs %s)" % (username, admin_handle))
        client = PyHandleClient("rest").instantiate_with_username_and_password(
            base, username, token, HTTPS_verify=False)
        ok("client created")

        step("construction with a user whose handle does not exist must fail")
        missing_user = "300:%s/NO-SUCH-ADMIN-%s" % (prefix, uuid.uuid4().hex[:8].upper())
        try:
            PyHandleClient("rest").instantiate_with_username_and_password(
                base, missing_user, token, HTTPS_verify=False)
        except HandleNotFoundException:
            ok("HandleNotFoundException for %s" % missing_user)
        else:
            raise Failure("client creation with %s succeeded; the node must answer "
                          "404 {\"responseCode\":100} for a missing handle" % missing_user)

        step("retrieve of an absent handle returns None")
        check(client.retrieve_handle_record_json(handle) is None,
              "retrieve_handle_record_json(%s) was not None before creation" % handle)
        ok("None")

        step("register_handle(%s, %s, checksum=...) (GET, then PUT ?overwrite=false)" % (handle, location))
        got = client.register_handle(handle, location, checksum=checksum1, overwrite=False)
        created = True
        check(got == handle, "register_handle returned %r, expected %r" % (got, handle))
        ok("registered %s" % got)

        step("read it back")
        rec = client.retrieve_handle_record_json(handle)
        check(rec is not None, "retrieve_handle_record_json returned None after create")
        check(rec.get("handle") == handle, "record handle %r != %r" % (rec.get("handle"), handle))
        check(rec.get("responseCode") == 1, "responseCode %r != 1" % rec.get("responseCode"))
        by_type = values_by_type(rec)
        check(by_type.get("URL") == [(1, location)],
              "URL values %r, expected [(1, %r)]" % (by_type.get("URL"), location))
        check(by_type.get("CHECKSUM") == [(2, checksum1)],
              "CHECKSUM values %r, expected [(2, %r)]" % (by_type.get("CHECKSUM"), checksum1))
        for v in rec["values"]:
            check("timestamp" in v, "value %r lacks 'timestamp' (pyhandle's modify needs it)" % v)
            check(isinstance(v.get("data"), dict) and "value" in v["data"],
                  "value %r: data must be {format, value}" % v)
        ok("values: %s" % sorted((v["index"], v["type"]) for v in rec["values"]))
        if "HS_ADMIN" not in by_type:
            print("    note: no HS_ADMIN visible to anonymous readers", flush=True)
        check(client.get_value_from_handle(handle, "URL") == location, "get_value_from_handle(URL) mismatch")
        check(client.retrieve_handle_record(handle).get("URL") == location, "retrieve_handle_record()['URL'] mismatch")
        ok("URL = %s" % location)

        step("register_handle again with overwrite=False must raise HandleAlreadyExistsException")
        try:
            client.register_handle(handle, location, overwrite=False)
        except HandleAlreadyExistsException:
            ok("HandleAlreadyExistsException")
        else:
            raise Failure("second register_handle(overwrite=False) succeeded")

        step("register_handle with overwrite=True (PUT ?overwrite=true), same content")
        got = client.register_handle(handle, location, checksum=checksum1, overwrite=True)
        check(got == handle, "register_handle(overwrite=True) returned %r" % got)
        by_type = values_by_type(client.retrieve_handle_record_json(handle))
        check(by_type.get("URL") == [(1, location)], "URL after overwrite: %r" % by_type.get("URL"))
        ok("overwritten, URL intact")

        step("modify_handle_value(CHECKSUM=<new>, EMAIL=%s) (PUT ?index=2&index=3&overwrite=true)" % email)
        got = client.modify_handle_value(handle, CHECKSUM=checksum2, EMAIL=email)
        check(got == handle, "modify_handle_value returned %r" % got)
        rec = client.retrieve_handle_record_json(handle)
        by_type = values_by_type(rec)
        check(by_type.get("CHECKSUM") == [(2, checksum2)],
              "CHECKSUM after modify %r, expected [(2, %r)]" % (by_type.get("CHECKSUM"), checksum2))
        check(by_type.get("EMAIL") == [(3, email)],
              "EMAIL after modify %r, expected [(3, %r)]" % (by_type.get("EMAIL"), email))
        check(by_type.get("URL") == [(1, location)],
              "URL after modify %r: the edit PUT (?index=...) must merge, not replace" % by_type.get("URL"))
        ok("CHECKSUM changed, EMAIL added, URL kept: %s" % sorted((v["index"], v["type"]) for v in rec["values"]))

        step("delete_handle_value(EMAIL) (DELETE ?index=3)")
        got = client.delete_handle_value(handle, "EMAIL")
        check(got == handle, "delete_handle_value returned %r" % got)
        by_type = values_by_type(client.retrieve_handle_record_json(handle))
        check("EMAIL" not in by_type, "EMAIL still present: %r" % by_type.get("EMAIL"))
        check(by_type.get("URL") == [(1, location)], "URL after value delete: %r" % by_type.get("URL"))
        check(by_type.get("CHECKSUM") == [(2, checksum2)], "CHECKSUM after value delete: %r" % by_type.get("CHECKSUM"))
        ok("EMAIL removed, URL and CHECKSUM kept")

        step("a client with a wrong password must not be able to write")
        bad = PyHandleClient("rest").instantiate_with_username_and_password(
            base, username, token + "-wrong", HTTPS_verify=False)
        bad_handle = prefix + "/PYHANDLE-BADPW-" + uuid.uuid4().hex[:8].upper()
        try:
            bad.register_handle(bad_handle, location, overwrite=True)
        except HandleAuthenticationError:
            ok("HandleAuthenticationError (HTTP 401 or responseCode 402)")
        except PyhandleBaseException as exc:
            ok("rejected with %s (pyhandle maps only 401/402 to HandleAuthenticationError)"
               % type(exc).__name__)
        else:
            client.delete_handle(bad_handle)
            raise Failure("PUT with a wrong password succeeded")
        check(client.retrieve_handle_record_json(bad_handle) is None,
              "%s exists after a rejected write" % bad_handle)

        step("delete_handle(%s)" % handle)
        got = client.delete_handle(handle)
        check(got == handle, "delete_handle returned %r" % got)
        created = False
        ok("deleted")

        step("the handle is gone")
        check(client.retrieve_handle_record_json(handle) is None,
              "retrieve_handle_record_json after delete was not None")
        ok("retrieve_handle_record_json -> None")
        try:
            client.get_value_from_handle(handle, "URL")
        except HandleNotFoundException:
            ok("get_value_from_handle -> HandleNotFoundException")
        else:
            raise Failure("get_value_from_handle after delete did not raise HandleNotFoundException")
        try:
            client.delete_handle(handle)
        except HandleNotFoundException:
            ok("second delete_handle -> HandleNotFoundException (404, responseCode 100)")
        else:
            raise Failure("second delete_handle did not raise HandleNotFoundException")

    except Failure as exc:
        print("FAIL: %s" % exc, flush=True)
        return 1
    except Exception as exc:  # pyhandle errors carry the HTTP response in their message
        traceback.print_exc()
        print("FAIL: unexpected %s: %s" % (type(exc).__name__, exc), flush=True)
        return 1
    finally:
        if created and client is not None:
            try:
                client.delete_handle(handle)
                print("    (cleanup: deleted %s)" % handle, flush=True)
            except Exception:
                pass

    print("PASS: pyhandle interop", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
