#!/usr/bin/python3
# Runs a command under the sandbox settings of a systemd unit file, as systemd would apply them
# to ExecStart, for a test where systemd is not PID 1 (no systemd-run): the capability bounding
# set (CapabilityBoundingSet=), NoNewPrivileges=, UMask= and the seccomp system-call filter
# (SystemCallFilter= lines, groups expanded by `systemd-analyze syscall-filter`, refused calls
# failing with SystemCallErrorNumber=). Needs python3-seccomp (libseccomp's bindings).
#   unit-sandbox.py UNIT_FILE COMMAND [ARG...]
import ctypes, errno, os, re, subprocess, sys
import seccomp

CAPS = ['chown', 'dac_override', 'dac_read_search', 'fowner', 'fsetid', 'kill', 'setgid', 'setuid', 'setpcap',
        'linux_immutable', 'net_bind_service', 'net_broadcast', 'net_admin', 'net_raw', 'ipc_lock', 'ipc_owner',
        'sys_module', 'sys_rawio', 'sys_chroot', 'sys_ptrace', 'sys_pacct', 'sys_admin', 'sys_boot', 'sys_nice',
        'sys_resource', 'sys_time', 'sys_tty_config', 'mknod', 'lease', 'audit_write', 'audit_control', 'setfcap',
        'mac_override', 'mac_admin', 'syslog', 'wake_alarm', 'block_suspend', 'audit_read', 'perfmon', 'bpf',
        'checkpoint_restore']
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38


def unit_values(text, key):
    return [m.group(1).strip() for m in re.finditer(rf'^{key}=(.*)$', text, re.M)]


def syscall_groups():
    groups, cur = {}, None
    out = subprocess.run(['systemd-analyze', 'syscall-filter'], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith('@'):
            cur = groups.setdefault(line.strip(), [])
        elif cur is not None and line.strip() and not line.strip().startswith('#'):
            cur.append(line.strip())
    return groups


def expand(names, groups, seen=None):
    seen = set() if seen is None else seen
    out = set()
    for n in names:
        if n.startswith('@'):
            if n in seen:
                continue
            seen.add(n)
            out |= expand(groups[n], groups, seen)
        else:
            out.add(n)
    return out


def allowed_syscalls(lines, groups):
    allowed = set()
    for line in lines:
        deny = line.startswith('~')
        names = expand(line.lstrip('~').split(), groups)
        allowed = allowed - names if deny else allowed | names
    return allowed


def main():
    unit = open(sys.argv[1]).read()
    libc = ctypes.CDLL(None, use_errno=True)
    keep = {c.lower().removeprefix('cap_') for v in unit_values(unit, 'CapabilityBoundingSet') for c in v.split()}
    for i, name in enumerate(CAPS):
        if name not in keep and libc.prctl(PR_CAPBSET_DROP, i, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            sys.exit(f'unit-sandbox: cannot drop cap_{name}: {os.strerror(ctypes.get_errno())}')
    if 'yes' in unit_values(unit, 'NoNewPrivileges') and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit('unit-sandbox: cannot set no_new_privs')
    for u in unit_values(unit, 'UMask'):
        os.umask(int(u, 8))
    err = unit_values(unit, 'SystemCallErrorNumber')
    action = seccomp.ERRNO(getattr(errno, err[-1])) if err else seccomp.KILL_PROCESS
    f = seccomp.SyscallFilter(defaction=action)
    for name in sorted(allowed_syscalls(unit_values(unit, 'SystemCallFilter'), syscall_groups())):
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError):
            pass  # not a system call of this architecture
    f.load()
    os.execvp(sys.argv[2], sys.argv[2:])


main()
