#!/usr/bin/python
# Writes the agent's small files (CA, certificate, key, configuration) in one
# step: one module run instead of four, each of which costs seconds of
# Python start-up on a slow (emulated) desktop.

DOCUMENTATION = r"""
module: daas_agent_files
short_description: Write several small files owned by root, atomically, in one run
description:
  - Each file whose content, mode or owner differs is written to a temporary
    file in its folder and renamed into place; the others are left alone.
options:
  files:
    description: The files to write.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path; its folder must exist.
        type: str
        required: true
      content:
        description: The file's whole content.
        type: str
        required: true
      mode:
        description: Octal permissions, e.g. "0600".
        type: str
        required: true
"""

RETURN = r"""
paths:
  description: The files written.
  type: list
  returned: always
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule


def unchanged(path, content, mode):
    try:
        with open(path, "rb") as handle:
            current = handle.read()
        status = os.stat(path)
    except FileNotFoundError:
        return False
    return (
        current == content
        and (status.st_mode & 0o7777) == mode
        and status.st_uid == 0
        and status.st_gid == 0
    )


def write(path, content, mode):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".daas-")
    try:
        os.fchmod(fd, mode)
        os.fchown(fd, 0, 0)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def main():
    module = AnsibleModule(
        argument_spec={
            "files": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "no_log": True,
                "options": {
                    "path": {"type": "str", "required": True},
                    "content": {"type": "str", "required": True, "no_log": True},
                    "mode": {"type": "str", "required": True},
                },
            }
        },
        supports_check_mode=True,
    )
    written = []
    for item in module.params["files"]:
        path = item["path"]
        try:
            mode = int(item["mode"], 8)
        except ValueError:
            module.fail_json(msg="mode of %s is not octal: %s" % (path, item["mode"]))
        content = item["content"].encode()
        if unchanged(path, content, mode):
            continue
        written.append(path)
        if not module.check_mode:
            try:
                write(path, content, mode)
            except OSError as err:
                module.fail_json(msg="cannot write %s: %s" % (path, err))
    module.exit_json(changed=bool(written), paths=written)


if __name__ == "__main__":
    main()
