#!/usr/bin/env python3
"""Offline structural check of deploy/terraform/ (run by deploy/check).

terraform itself cannot be installed here (it is not packaged for Debian or PyPI, and its
providers come from a registry this machine does not reach), so `terraform validate` does not
run. Instead: every file parses as HCL (python-hcl2); every `var.X` is declared in its module;
every resource or data source referenced is defined in it; every module call's source exists
and passes only variables the module declares; no NAT gateway, internet gateway, EIP or
peering is built. fmt-check.cjs does the `terraform fmt -check` part. Then the network rules:

- No ingress rule anywhere opens TCP 22: aws_vpc_security_group_ingress_rule,
  aws_security_group_rule of type ingress and aws_security_group inline `ingress` blocks whose
  port range covers 22 (or all protocols), alicloud_security_group_rule of type ingress whose
  port_range covers 22 or is -1/-1. Ports are literals or `var.X` (its default); a port this
  check cannot resolve counts as covering 22. The one exception: an alicloud rule whose source
  is `source_security_group_id` = an alicloud_security_group of this module named *bastion*.
- No egress rule anywhere accepts all ports to 0.0.0.0/0.
- Egress, by module: the gateway modules (security-group, isolated-vpc, endpoint-*) allow only
  the upstream port, and alicloud/security-group has a drop-all egress rule. operation-audit
  (the forwarder): only TCP var.datakit_port; on Alibaba Cloud also TCP 80/443 to
  var.sls_intranet_cidrs (the SLS intranet endpoint the function reads from) and UDP 53 to
  var.dns_server_cidrs, plus the drop-all rule. maintenance-access (AWS): only TCP 443 to a
  security group of a VPC endpoint of the module or to an S3 gateway endpoint's prefix list;
  (Alibaba Cloud): no egress rule.
- Structure of the audit and maintenance modules (policies inside jsonencode(...) are checked
  loosely, by regular expressions on the module's text):
  aws/operation-audit: an aws_cloudtrail with is_multi_region_trail, include_global_service_events
  and enable_log_file_validation true; a COMPLIANCE Object Lock configuration; a log
  subscription filter; the forwarder function in a VPC.
  alicloud/operation-audit: an alicloud_actiontrail_trail with trail_region and event_rw "All";
  a locked alicloud_oss_bucket_worm; an FC trigger (alicloud_fc_trigger type or
  alicloud_fcv3_trigger trigger_type) "log".
  aws/maintenance-access: the SSM-SessionManagerRunShell Session document with
  s3EncryptionEnabled and cloudWatchEncryptionEnabled true and runAsEnabled false; a
  maintenance aws_iam_role counted by var.window_open whose trust policy has DateGreaterThan
  and DateLessThan on aws:CurrentTime, aws:MultiFactorAuthPresent and sts:ExternalId; a Deny
  after aws:CurrentTime; a random_password whose keepers use var.window_id.
  alicloud/maintenance-access: an alicloud_bastionhost_instance; an alicloud_bastionhost_user
  and alicloud_ram_role counted by var.window_open; an alicloud_ram_policy with DateGreaterThan
  and DateLessThan on acs:CurrentTime, acs:MFAPresent and a Deny; a random_password whose
  keepers use var.window_id.
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


GATEWAY_MODULES = {"security-group", "isolated-vpc", "endpoint-service", "endpoint-consumer"}
ALL_PORTS = (0, 65535)


def resolve_port(value, defaults):
    """A port as an int: a literal, or `var.X` with a numeric default; None when unknown."""
    value = strip(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if re.fullmatch(r"-?\d+", value):
            return int(value)
        m = re.fullmatch(r"\$\{var\.([A-Za-z_][A-Za-z0-9_]*)\}", value)
        if m and isinstance(defaults.get(m.group(1)), int):
            return defaults[m.group(1)]
    return None


def port_range(body, defaults, lo_key="from_port", hi_key="to_port", proto_key="ip_protocol"):
    """(lo, hi) of an AWS rule: all ports for protocol -1/all, None when a port is unknown."""
    if str(strip(body.get(proto_key))) in ("-1", "all"):
        return ALL_PORTS
    lo, hi = resolve_port(body.get(lo_key), defaults), resolve_port(body.get(hi_key), defaults)
    return None if lo is None or hi is None else (lo, hi)


def alicloud_range(body, defaults):
    """(lo, hi) of an alicloud_security_group_rule's port_range; None when unknown."""
    if val(body, "ip_protocol") == "all":
        return ALL_PORTS
    text = val(body, "port_range") or "-1/-1"
    parts = re.split(r"/(?![^{]*\})", text)
    if len(parts) != 2:
        return None
    if parts == ["-1", "-1"]:
        return ALL_PORTS
    lo, hi = resolve_port(parts[0], defaults), resolve_port(parts[1], defaults)
    return None if lo is None or hi is None else (lo, hi)


def covers(rng, port):
    return rng is None or rng[0] <= port <= rng[1]


def check_network(where, resources, defaults, text):
    """The port-22, egress and structure rules of the module docstring."""
    errors = []
    for (rtype, rname), body in resources.items():
        ingress = rtype == "aws_vpc_security_group_ingress_rule" or (
            rtype == "aws_security_group_rule" and val(body, "type") == "ingress")
        if ingress and covers(port_range(body, defaults, proto_key="ip_protocol" if "ip_protocol" in body else "protocol"), 22):
            errors.append(f"{where}: ingress {rname} opens (or may open) port 22")
        if rtype == "aws_security_group":
            for block in body.get("ingress", []) or []:
                if isinstance(block, dict) and covers(port_range(block, defaults, proto_key="protocol"), 22):
                    errors.append(f"{where}: {rname} has an inline ingress that opens (or may open) port 22")
        if rtype == "alicloud_security_group_rule" and val(body, "type") == "ingress" and val(body, "policy") != "drop":
            if val(body, "ip_protocol") in ("tcp", "all") and covers(alicloud_range(body, defaults), 22):
                source = re.fullmatch(r"\$\{alicloud_security_group\.([a-z0-9_]+)\.id\}", str(val(body, "source_security_group_id")))
                if not (source and "bastion" in source.group(1) and ("alicloud_security_group", source.group(1)) in resources):
                    errors.append(f"{where}: ingress {rname} opens port 22 to something other than the bastion's security group")
        open_aws = rtype == "aws_vpc_security_group_egress_rule" and val(body, "cidr_ipv4") == "0.0.0.0/0" and port_range(body, defaults) == ALL_PORTS
        open_ali = (rtype == "alicloud_security_group_rule" and val(body, "type") == "egress" and val(body, "policy") != "drop"
                    and val(body, "cidr_ip") == "0.0.0.0/0" and alicloud_range(body, defaults) == ALL_PORTS)
        if open_aws or open_ali:
            errors.append(f"{where}: egress {rname} accepts every port to 0.0.0.0/0")

    cloud = "aws" if where.startswith("aws/") else "alicloud"
    module = where.split("/", 1)[1]
    egress_aws = {n: b for (t, n), b in resources.items() if t == "aws_vpc_security_group_egress_rule"}
    egress_ali = {n: b for (t, n), b in resources.items() if t == "alicloud_security_group_rule"
                  and val(b, "type") == "egress" and val(b, "policy") == "accept"}
    drops = [b for (t, _), b in resources.items() if t == "alicloud_security_group_rule"
             and val(b, "type") == "egress" and val(b, "policy") == "drop" and val(b, "cidr_ip") == "0.0.0.0/0"]
    if module in GATEWAY_MODULES:
        for rname, body in egress_aws.items():
            for key in ("from_port", "to_port"):
                if val(body, key) != "${var.upstream_port}":
                    errors.append(f"{where}: egress {rname} {key} is not the upstream port")
        for rname, body in egress_ali.items():
            if val(body, "port_range") != "${var.upstream_port}/${var.upstream_port}":
                errors.append(f"{where}: egress {rname} accepts more than the upstream port")
        if where == "alicloud/security-group" and not drops:
            errors.append("alicloud/security-group: no drop-all egress rule (the default allows all)")
    elif module == "operation-audit":
        for rname, body in egress_aws.items():
            if val(body, "ip_protocol") != "tcp" or any(val(body, k) != "${var.datakit_port}" for k in ("from_port", "to_port")):
                errors.append(f"{where}: egress {rname} is not TCP to var.datakit_port")
        for rname, body in egress_ali.items():
            rng, proto, dest = alicloud_range(body, defaults), val(body, "ip_protocol"), val(body, "cidr_ip")
            datakit = proto == "tcp" and val(body, "port_range") == "${var.datakit_port}/${var.datakit_port}"
            sls = (proto == "tcp" and rng in ((80, 80), (443, 443)) and dest == "${each.value}"
                   and "var.sls_intranet_cidrs" in str(body.get("for_each")))
            dns = proto == "udp" and rng == (53, 53) and dest == "${each.value}" and "var.dns_server_cidrs" in str(body.get("for_each"))
            if not (datakit or sls or dns):
                errors.append(f"{where}: egress {rname} is neither the DataKit port, the SLS endpoint nor DNS")
        if cloud == "alicloud" and egress_ali and not drops:
            errors.append(f"{where}: no drop-all egress rule (the default allows all)")
    elif module == "maintenance-access":
        endpoint_groups = set()
        for (t, _), b in resources.items():
            if t == "aws_vpc_endpoint":
                endpoint_groups |= set(re.findall(r"aws_security_group\.([a-z0-9_]+)\.id", str(b.get("security_group_ids"))))
        for rname, body in egress_aws.items():
            ref = re.fullmatch(r"\$\{aws_security_group\.([a-z0-9_]+)\.id\}", str(val(body, "referenced_security_group_id")))
            plist = re.fullmatch(r"\$\{aws_vpc_endpoint\.([a-z0-9_]+)\.prefix_list_id\}", str(val(body, "prefix_list_id")))
            to_endpoint = (ref and ref.group(1) in endpoint_groups) or (plist and ("aws_vpc_endpoint", plist.group(1)) in resources)
            if val(body, "ip_protocol") != "tcp" or port_range(body, defaults) != (443, 443) or not to_endpoint or val(body, "cidr_ipv4"):
                errors.append(f"{where}: egress {rname} is not TCP 443 to a VPC endpoint")
        for rname in egress_ali:
            errors.append(f"{where}: egress {rname}: the bastion module opens no egress")

    def need(ok, what):
        if not ok:
            errors.append(f"{where}: {what}")

    def of(rtype):
        return [b for (t, _), b in resources.items() if t == rtype]

    window_keepers = any(re.search(r"\$\{var\.window_id\}", str(b.get("keepers"))) for b in of("random_password"))
    if where == "aws/operation-audit":
        need(any(all(b.get(k) is True for k in ("is_multi_region_trail", "include_global_service_events", "enable_log_file_validation"))
                 for b in of("aws_cloudtrail")),
             "no aws_cloudtrail with is_multi_region_trail, include_global_service_events and enable_log_file_validation true")
        need(re.search(r'mode\s*=\s*"COMPLIANCE"', text) and of("aws_s3_bucket_object_lock_configuration"),
             "no COMPLIANCE Object Lock on the trail bucket")
        need(of("aws_cloudwatch_log_subscription_filter"), "no subscription filter to the forwarder")
        need(any(b.get("vpc_config") for b in of("aws_lambda_function")), "the forwarder function is not in a VPC")
    if where == "alicloud/operation-audit":
        need(any(val(b, "trail_region") == "All" and val(b, "event_rw") == "All" for b in of("alicloud_actiontrail_trail")),
             "no alicloud_actiontrail_trail with trail_region and event_rw \"All\"")
        need(any(val(b, "status") == "Locked" for b in of("alicloud_oss_bucket_worm")), "no locked WORM retention on the archive bucket")
        need(any(val(b, "type") == "log" for b in of("alicloud_fc_trigger"))
             or any(val(b, "trigger_type") == "log" for b in of("alicloud_fcv3_trigger")), "no Function Compute trigger of type log")
    if where == "aws/maintenance-access":
        documents = [b for b in of("aws_ssm_document") if val(b, "document_type") == "Session"
                     and re.search(r"SSM-SessionManagerRunShell", text)]
        content = " ".join(str(b.get("content")) for b in documents)
        need(documents and all(re.search(rf"{k}\s*=\s*true", content) for k in ("s3EncryptionEnabled", "cloudWatchEncryptionEnabled"))
             and re.search(r"runAsEnabled\s*=\s*false", content),
             "no Session preferences document with encrypted S3 and CloudWatch logging and Run As off")
        trusts = [str(b.get("assume_role_policy")) for b in of("aws_iam_role")
                  if "var.window_open" in str(b.get("count")) and "var.vendor_principal_arns" in str(b.get("assume_role_policy"))]
        need(trusts and all(re.search(rf'{c}\s*=\s*\{{\s*\\?"aws:CurrentTime', trust) for trust in trusts for c in ("DateGreaterThan", "DateLessThan"))
             and all("aws:MultiFactorAuthPresent" in trust and "sts:ExternalId" in trust for trust in trusts),
             "the maintenance role (counted by var.window_open) does not trust the vendor only between window_starts_at "
             "and window_ends_at (aws:CurrentTime DateGreaterThan and DateLessThan), with MFA and the external ID")
        need(re.search(r'Effect\s*=\s*"Deny"[^}]*?\bDateGreaterThan\s*=\s*\{\s*"aws:CurrentTime"', text, re.S),
             "no Deny after the window's end")
        need(window_keepers, "no random_password rotated by var.window_id (keepers)")
    if where == "alicloud/maintenance-access":
        need(of("alicloud_bastionhost_instance"), "no alicloud_bastionhost_instance")
        need(any("var.window_open" in str(b.get("count")) for b in of("alicloud_bastionhost_user")),
             "the vendor's bastion user is not counted by var.window_open")
        need(any("var.window_open" in str(b.get("count")) for b in of("alicloud_ram_role")),
             "the maintenance RAM role is not counted by var.window_open")
        need(of("alicloud_ram_policy") and all(re.search(rf'{c}\s*=\s*\{{\s*"acs:CurrentTime"', text) for c in ("DateGreaterThan", "DateLessThan"))
             and '"acs:MFAPresent"' in text and re.search(r'Effect\s*=\s*"Deny"', text),
             "the maintenance RAM policy lacks acs:CurrentTime DateGreaterThan/DateLessThan, acs:MFAPresent or the Deny")
        need(window_keepers, "no random_password rotated by var.window_id (keepers)")
    return errors


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
    defaults = {strip(n): strip(b.get("default")) for p in parsed.values() for n, b in blocks(p, "variable")}
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
    datas = set()
    for p in parsed.values():
        for dtype, body in blocks(p, "data"):
            for dname in body:
                datas.add((strip(dtype), strip(dname)))
    for rtype, rname in resources:
        if rtype in FORBIDDEN:
            errors.append(f"{directory.name}: {rtype}.{rname} would open a way out")
    code = "\n".join(re.sub(r"(?m)^\s*#.*$", "", t) for t in texts.values())
    referenced = set(re.findall(r"(?<![\w.])(data\.)?((?:aws|alicloud|random|archive)_[a-z0-9_]+)\.([a-z0-9_]+)\.", code))
    for data, rtype, rname in sorted(referenced):
        if (rtype, rname) not in (datas if data else resources):
            errors.append(f"{directory.name}: {data}{rtype}.{rname} is referenced but not defined")
    where = f"{directory.parent.name}/{directory.name}"
    errors += check_network(where, resources, defaults, code)
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
    print(f"terraform: {len(modules)} modules parse; variables, references, module calls, network rules "
          "(no port 22 but from the bastion, egress by module) and the audit and maintenance structure check out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
