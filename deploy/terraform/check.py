#!/usr/bin/env python3
"""Offline structural check of deploy/terraform/ (run by deploy/check).

terraform itself cannot be installed here (it is not packaged for Debian or PyPI, and its
providers come from a registry this machine does not reach), so `terraform validate` does not
run. Instead: every file parses as HCL (python-hcl2); every `var.X` is declared in its module;
every module call's source exists and passes only variables the module declares; no NAT
gateway, internet gateway, EIP or peering is built; every egress rule allows only the
upstream port, and on Alibaba Cloud a drop-all egress rule exists. fmt-check.mjs does the
`terraform fmt -check` part.
"""

import pathlib
import re
import sys

import hcl2

HERE = pathlib.Path(__file__).resolve().parent
FORBIDDEN = {
    "aws_nat_gateway", "aws_internet_gateway", "aws_egress_only_internet_gateway", "aws_eip",
    "aws_vpc_peering_connection", "alicloud_nat_gateway", "alicloud_eip_address",
    "alicloud_eip_association", "alicloud_vpc_peer_connection",
}


def blocks(parsed, kind):
    for block in parsed.get(kind, []):
        for name, body in block.items():
            yield name, body


def strip(value):
    return value.strip('"') if isinstance(value, str) else value


def val(body, key):
    return strip(body.get(key))


def check_module(directory):
    errors = []
    texts = {f.name: f.read_text() for f in sorted(directory.glob("*.tf"))}
    for need in ("main.tf", "variables.tf", "outputs.tf"):
        if need not in texts:
            errors.append(f"{directory.name}: no {need}")
    parsed = {}
    for name, text in texts.items():
        try:
            parsed[name] = hcl2.loads(text)
        except Exception as e:  # the parser raises several types
            errors.append(f"{directory.name}/{name}: does not parse: {e}")
    declared = {strip(n) for p in parsed.values() for n, _ in blocks(p, "variable")}
    used = set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_]*)", "\n".join(texts.values())))
    for v in sorted(used - declared):
        errors.append(f"{directory.name}: var.{v} is used but not declared")
    for v in sorted(declared - used):
        errors.append(f"{directory.name}: variable {v} is declared but not used")
    resources = {}
    for p in parsed.values():
        for rtype, body in blocks(p, "resource"):
            rtype = strip(rtype)
            for rname, rbody in body.items():
                resources[(rtype, strip(rname))] = rbody
    for rtype, rname in resources:
        if rtype in FORBIDDEN:
            errors.append(f"{directory.name}: {rtype}.{rname} would open a way out")
    referenced = set(re.findall(r"\b((?:aws|alicloud)_[a-z0-9_]+)\.([a-z0-9_]+)\.", "\n".join(texts.values())))
    for rtype, rname in sorted(referenced):
        if (rtype, rname) not in resources:
            errors.append(f"{directory.name}: {rtype}.{rname} is referenced but not defined")
    for (rtype, rname), body in resources.items():
        if rtype == "aws_vpc_security_group_egress_rule":
            for key in ("from_port", "to_port"):
                if val(body, key) != "${var.upstream_port}":
                    errors.append(f"{directory.name}: egress {rname} {key} is not the upstream port")
        if rtype == "alicloud_security_group_rule" and val(body, "type") == "egress":
            if val(body, "policy") == "accept" and val(body, "port_range") != "${var.upstream_port}/${var.upstream_port}":
                errors.append(f"{directory.name}: egress {rname} accepts more than the upstream port")
    if directory.name == "security-group" and directory.parent.name == "alicloud":
        drops = [b for (t, _), b in resources.items() if t == "alicloud_security_group_rule"
                 and val(b, "type") == "egress" and val(b, "policy") == "drop" and val(b, "cidr_ip") == "0.0.0.0/0"]
        if not drops:
            errors.append("alicloud/security-group: no drop-all egress rule (the default allows all)")
    for p in parsed.values():
        for mname, body in blocks(p, "module"):
            source = directory / strip(body["source"])
            if not source.is_dir():
                errors.append(f"{directory.name}: module {mname}: no {source}")
                continue
            inputs = {k for k in body if not k.startswith("__")}
            inputs -= {"source", "version", "providers", "count", "for_each", "depends_on"}
            target = {strip(n) for f in source.glob("*.tf") for n, _ in blocks(hcl2.loads(f.read_text()), "variable")}
            for i in sorted(inputs - target):
                errors.append(f"{directory.name}: module {mname} passes {i}, which {source.name} does not declare")
    return errors


def main():
    root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    modules = sorted({f.parent for f in root.rglob("*.tf")})
    errors = [e for m in modules for e in check_module(m)]
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"terraform: {len(modules)} modules parse; variables, module calls and egress rules check out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
