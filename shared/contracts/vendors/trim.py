#!/usr/bin/env python3
"""Keeps only the operations we call from a vendor's OpenAPI 3 description, plus every component
they reference (transitively), the security schemes, servers and info, so the kept file stays small
and Prism loads it quickly. Standard library only; the output is deterministic (sorted keys).

    trim.py [--server-path-into-paths] SOURCE.json OUT.json 'post /api/events' ...

--server-path-into-paths moves the path of the first server URL (Mailchimp's `/3.0`) into every
path, leaving the server its origin: Prism's mock routes on `paths` alone and ignores `servers`,
while our requests carry the full path. The two describe the same URLs.
"""
import json
import sys
from urllib.parse import urlsplit


def refs(node, found):
    """Collects every local '$ref' ('#/components/...') under node."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith("#/"):
                sys.exit(f"remote $ref {ref!r}: Prism must run offline, resolve it first")
            found.add(ref)
        for value in node.values():
            refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)


def resolve(spec, ref):
    node = spec
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def main():
    args = sys.argv[1:]
    server_path_into_paths = args[:1] == ["--server-path-into-paths"]
    if server_path_into_paths:
        args = args[1:]
    source, out, *operations = args
    spec = json.load(open(source, encoding="utf-8"))
    paths = {}
    for operation in operations:
        method, path = operation.split(" ", 1)
        item = spec["paths"][path]
        kept = paths.setdefault(path, {})
        kept[method] = item[method]
        if "parameters" in item:  # path-level parameters apply to every method
            kept["parameters"] = item["parameters"]
    trimmed = {key: spec[key] for key in ("openapi", "info", "servers", "security") if key in spec}
    trimmed["paths"] = paths
    components = {}
    schemes = spec.get("components", {}).get("securitySchemes")
    if schemes:
        components["securitySchemes"] = schemes
    seen, todo = set(), set()
    refs(paths, todo)
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, section, kind, name = ref.split("/", 3)
        assert section == "components", ref
        target = resolve(spec, ref)
        components.setdefault(kind, {})[name] = target
        refs(target, todo)
    trimmed["components"] = components
    if server_path_into_paths:
        server = urlsplit(spec["servers"][0]["url"])
        prefix = server.path.rstrip("/")
        trimmed["servers"] = [{"url": f"{server.scheme}://{server.netloc}"}]
        trimmed["paths"] = {prefix + path: item for path, item in paths.items()}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(trimmed, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    print(f"{out}: {len(paths)} paths, {len(seen)} components")


if __name__ == "__main__":
    main()
