// The unit's sandbox applied to real runs. systemd is not PID 1 here (no systemd-run), so
// test/helpers/unit-sandbox.py applies what the unit says, as systemd would before ExecStart:
// its CapabilityBoundingSet=, NoNewPrivileges=, UMask= and SystemCallFilter= (the seccomp filter
// built from `systemd-analyze syscall-filter`'s groups, refused calls failing with EPERM). Under
// it: losetup attaches a loop device, blkdelta syncs, verifies and runs a job onto it, lvm makes
// and removes a PV and a VG on another loop device; a privileged call (mount) is refused, so the
// filter is really there. Not covered: device-mapper activation (lvcreate, snapshots), since this
// kernel has no device-mapper; it is ioctl on /dev/mapper/control, which the filter allows.
import test from 'ava';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN } from './helpers/jobs.js';

const UNIT = fileURLToPath(new URL('../../systemd/blkdelta@.service', import.meta.url));
const SANDBOX = fileURLToPath(new URL('../../test/helpers/unit-sandbox.py', import.meta.url));
const MiB = 1024 * 1024;
const LVM_ENV = { LVM_SUPPRESS_FD_WARNINGS: '1', DM_DISABLE_UDEV: '1' };
const LVM_CONFIG = 'backup{backup=0 archive=0} devices{obtain_device_list_from_udev=0} activation{udev_sync=0 udev_rules=0}';

/** COMMAND under the unit's sandbox; never rejects (the exit code is what is asserted). */
function sandboxed(cmd: string, args: string[], env: Record<string, string> = {}) {
  return execa('/usr/bin/python3', [SANDBOX, UNIT, cmd, ...args], { reject: false, env: { ...env, JOURNAL_STREAM: '' } });
}

test.before(async () => {
  const probe = await execa('/usr/bin/python3', ['-c', 'import seccomp'], { reject: false });
  if (probe.exitCode !== 0) throw new Error('python3-seccomp missing: bash .ci/install-deps');
});

test('the sandbox is applied: bounded capabilities, no_new_privs, seccomp, umask 0077, mount refused', async (t) => {
  const r = await sandboxed('bash', ['-c', 'grep -E "^(CapBnd|NoNewPrivs|Seccomp):" /proc/self/status; umask; mount -t tmpfs none /mnt 2>&1; echo "mount=$?"']);
  t.is(r.exitCode, 0, r.stderr);
  const bnd = BigInt('0x' + /CapBnd:\s+([0-9a-f]+)/.exec(r.stdout)![1]);
  t.is(bnd & (1n << 21n), 1n << 21n, 'CAP_SYS_ADMIN kept (device-mapper, loop ioctls)');
  t.is(bnd & (1n << 16n), 0n, 'CAP_SYS_MODULE dropped');
  t.is(bnd & (1n << 19n), 0n, 'CAP_SYS_PTRACE dropped');
  t.regex(r.stdout, /NoNewPrivs:\s+1/);
  t.regex(r.stdout, /Seccomp:\s+2/);
  t.regex(r.stdout, /^0077$/m);
  t.regex(r.stdout, /permission denied/i);
  t.notRegex(r.stdout, /mount=0/);
});

test('under the sandbox: losetup, blkdelta sync/verify/run onto the loop device, private patch files, readable records', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-sandbox-'));
  const src = join(dir, 'src.img');
  const tgt = join(dir, 'tgt.img');
  writeFileSync(src, randomBytes(8 * MiB));
  writeFileSync(tgt, Buffer.alloc(8 * MiB));
  const att = await sandboxed('losetup', ['-f', '--show', tgt]);
  t.is(att.exitCode, 0, att.stderr);
  const dev = att.stdout.trim();
  t.teardown(async () => {
    await execa('losetup', ['-d', dev], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  });
  t.regex(dev, /^\/dev\/loop\d+$/);
  const sync = await sandboxed(BIN, ['sync', '--no-progress', src, dev]);
  t.is(sync.exitCode, 0, sync.stderr);
  const verify = await sandboxed(BIN, ['verify', '--no-progress', src, dev]);
  t.is(verify.exitCode, 0, verify.stderr);
  t.regex(verify.stdout, /IDENTICAL/);
  const patch = join(dir, 'x.bdp');
  const p = await sandboxed(BIN, ['sync', '--no-progress', '--patch-out', patch, src, dev]);
  t.is(p.exitCode, 0, p.stderr);
  t.is(statSync(patch).mode & 0o777, 0o600, 'UMask=0077: a patch file is private');
  const config = join(dir, 'blkdelta.toml');
  writeFileSync(config, `state_dir = "${join(dir, 'state')}"\n\n[jobs.sb]\nsource = "${src}"\ntarget = "${dev}"\nverify = true\n`);
  writeFileSync(src, randomBytes(MiB), { flag: 'r+' });
  const run = await sandboxed(BIN, ['run', 'sb', '--config', config]);
  t.is(run.exitCode, 0, run.stderr);
  t.is(statSync(join(dir, 'state', 'sb.json')).mode & 0o777, 0o644, 'records stay readable for the monitoring user');
  t.is(JSON.parse(readFileSync(join(dir, 'state', 'sb.json'), 'utf8')).runs[0].outcome, 'success');
});

test('under the sandbox: lvm makes and removes a PV and a VG on a loop device', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-sandbox-lvm-'));
  const img = join(dir, 'pv.img');
  writeFileSync(img, Buffer.alloc(32 * MiB));
  const dev = (await execa('losetup', ['-f', '--show', img])).stdout.trim();
  const vg = `blkdeltasb${process.pid}`;
  const lvm = (cmd: string, ...args: string[]) => sandboxed(cmd, ['-y', '--devices', dev, '--config', LVM_CONFIG, ...args], LVM_ENV);
  t.teardown(async () => {
    await execa('vgremove', ['-y', '--devices', dev, '--config', LVM_CONFIG, vg], { reject: false, env: LVM_ENV });
    await execa('pvremove', ['-y', '--devices', dev, '--config', LVM_CONFIG, dev], { reject: false, env: LVM_ENV });
    await execa('losetup', ['-d', dev], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  });
  for (const [cmd, args] of [['pvcreate', [dev]], ['vgcreate', [vg, dev]]] as const) {
    const r = await lvm(cmd, ...args);
    t.is(r.exitCode, 0, `${cmd}: ${r.stderr}`);
  }
  const vgs = await sandboxed('vgs', ['--devices', dev, '--config', LVM_CONFIG, '--reportformat', 'json', '-o', 'vg_name,pv_count', vg], LVM_ENV);
  t.is(vgs.exitCode, 0, vgs.stderr);
  t.deepEqual(JSON.parse(vgs.stdout).report[0].vg, [{ vg_name: vg, pv_count: '1' }]);
  for (const [cmd, args] of [['vgremove', [vg]], ['pvremove', [dev]]] as const) {
    const r = await lvm(cmd, ...args);
    t.is(r.exitCode, 0, `${cmd}: ${r.stderr}`);
  }
});
