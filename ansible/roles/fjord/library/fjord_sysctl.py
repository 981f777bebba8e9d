#!/usr/bin/python
# Role-local module of the fjord role (ansible-core has no sysctl module;
# ansible.posix.sysctl would be the alternative, at the cost of a collection).
"""Set kernel settings through /proc/sys where the host allows it."""

DOCUMENTATION = r"""
---
module: fjord_sysctl
short_description: Set kernel settings through /proc/sys, skipping the ones the host does not allow
description:
  - For each key, writes the value to its /proc/sys file when the file exists, is writable and holds
    a different value (whitespace-insensitive). Keys whose file is absent or read-only (containers
    mount /proc/sys read-only except net.* of their own network namespace) are reported as unavailable,
    not as failures.
  - Persisting the settings across reboots is left to a sysctl.d file (the role templates one).
options:
  settings:
    description: Kernel settings, dotted names (vm.swappiness) to values.
    type: dict
    required: true
author: Fjord developers
"""

RETURN = r"""
applied:
  description: Keys written (or that would be, in check mode).
  type: list
  returned: always
unavailable:
  description: Keys whose /proc/sys file is absent or read-only on this host.
  type: list
  returned: always
writable:
  description: Keys that can be set on this host (applied or already at the value).
  type: list
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule


def proc_path(key):
    return os.path.join("/proc/sys", *key.split("."))


def main():
    module = AnsibleModule(argument_spec={"settings": {"type": "dict", "required": True}},
                           supports_check_mode=True)
    applied, unavailable, writable = [], [], []
    for key in sorted(module.params["settings"]):
        want = " ".join(str(module.params["settings"][key]).split())
        path = proc_path(key)
        if not os.path.isfile(path) or not os.access(path, os.W_OK):
            unavailable.append(key)
            continue
        try:
            with open(path) as f:
                have = " ".join(f.read().split())
        except OSError as e:
            module.fail_json(msg=f"cannot read {path}: {e}")
        writable.append(key)
        if have == want:
            continue
        applied.append(key)
        if module.check_mode:
            continue
        try:
            with open(path, "w") as f:
                f.write(want + "\n")
        except OSError as e:
            if e.errno in (1, 13, 30):  # EPERM, EACCES, EROFS: not ours to set here after all
                applied.remove(key)
                writable.remove(key)
                unavailable.append(key)
                continue
            module.fail_json(msg=f"cannot write {want!r} to {path}: {e}")
    module.exit_json(changed=bool(applied), applied=applied, unavailable=sorted(unavailable), writable=writable)


if __name__ == "__main__":
    main()
