#!/usr/bin/python3
"""Ansible module: make the live CIB's configuration the rendered one, by patch, only where it differs."""

import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: highlander_cib
short_description: Apply a rendered Pacemaker configuration as a CIB patch
description:
  - Queries the live CIB (C(cibadmin --query)), builds the wanted CIB offline
    (the live document with its configuration section replaced by the rendered
    one), diffs the two (C(crm_diff --no-version --original live --new wanted))
    and pushes only the difference (C(cibadmin --patch)). Nothing is pushed
    when there is no difference, so a second run reports no change; in check
    mode the difference is computed and reported, never pushed.
  - Pacemaker-maintained cluster properties (dc-version,
    cluster-infrastructure, have-watchdog, last-lrm-refresh) are kept.
options:
  cib:
    description: The rendered cib.xml (templates/cib.xml.j2, via highlander render).
    required: true
    type: str
  wait:
    description: Seconds to wait for the CIB manager to answer.
    type: int
    default: 120
"""

PACEMAKER_OWNED = ("dc-version", "cluster-infrastructure", "have-watchdog", "last-lrm-refresh")


def _bootstrap_options(config):
    for nvset in config.iterfind("crm_config/cluster_property_set"):
        if nvset.get("id") == "cib-bootstrap-options":
            return nvset
    return None


def wanted_cib(live_text, rendered_text):
    """The live CIB with its configuration replaced by the rendered one (pure)."""
    live_root = ET.fromstring(live_text)
    live = live_root.find("configuration")
    wanted = ET.fromstring(rendered_text).find("configuration")
    if live is None or wanted is None:
        raise ValueError("no <configuration> element in the %s CIB" % ("live" if live is None else "rendered"))
    live_options, wanted_options = _bootstrap_options(live), _bootstrap_options(wanted)
    if live_options is not None and wanted_options is not None:
        have = {nvpair.get("name") for nvpair in wanted_options.iterfind("nvpair")}
        for nvpair in live_options.iterfind("nvpair"):
            if nvpair.get("name") in PACEMAKER_OWNED and nvpair.get("name") not in have:
                wanted_options.append(nvpair)
    index = list(live_root).index(live)
    live_root.remove(live)
    live_root.insert(index, wanted)
    return ET.tostring(live_root, encoding="unicode")


def run(module, argv, ok=(0,)):
    result = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"))
    if result.returncode not in ok:
        module.fail_json(
            msg="%s exited with %d: %s" % (" ".join(argv), result.returncode, (result.stderr or result.stdout).strip())
        )
    return result


def query(module, wait):
    deadline = time.monotonic() + wait
    while True:
        result = subprocess.run(["cibadmin", "--query"], capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout
        if time.monotonic() > deadline:
            module.fail_json(
                msg="the CIB did not answer within %ds: cibadmin --query: %s" % (wait, result.stderr.strip())
            )
        time.sleep(2)


def main():
    module = AnsibleModule(
        argument_spec={"cib": {"type": "str", "required": True}, "wait": {"type": "int", "default": 120}},
        supports_check_mode=True,
    )
    live = query(module, module.params["wait"])
    try:
        wanted = wanted_cib(live, module.params["cib"])
    except (ET.ParseError, ValueError) as exc:
        module.fail_json(msg="cannot build the wanted CIB: %s" % exc)
    scratch = tempfile.mkdtemp(prefix="highlander-cib-")
    try:
        original_path = os.path.join(scratch, "live.xml")
        wanted_path = os.path.join(scratch, "wanted.xml")
        patch_path = os.path.join(scratch, "patch.xml")
        with open(original_path, "w") as handle:
            handle.write(live)
        with open(wanted_path, "w") as handle:
            handle.write(wanted)
        diff = run(module, ["crm_diff", "--no-version", "--original", original_path, "--new", wanted_path], ok=(0, 1))
        if diff.returncode == 0:
            module.exit_json(changed=False, patch="")
        if not module.check_mode:
            with open(patch_path, "w") as handle:
                handle.write(diff.stdout)
            run(module, ["cibadmin", "--patch", "--xml-file", patch_path])
        module.exit_json(changed=True, patch=diff.stdout)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
