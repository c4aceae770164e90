// runLvm's timeouts, against stand-in lvm commands on PATH (shell scripts that log the signals they
// get): a command that changes the VG is only ever sent SIGINT and then waited for, because a
// lvcreate killed between the suspend and the resume of a snapshot's origin leaves the production
// LV suspended; a report (lvs) is killed. Real lvm cannot run here (no device-mapper); the VM lane
// runs the real commands.
import test from 'ava';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitCode } from '../src/errors.js';
import { MAX_CAPTURE } from '../src/exec.js';
import { LvmError, runLvm } from '../src/lvm/lvm.js';

const dir = mkdtempSync(join(tmpdir(), 'blkdelta-lvmrun-'));
process.env.PATH = `${dir}:${process.env.PATH ?? ''}`;
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

// A stand-in for CMD that logs every SIGINT/SIGTERM it gets in CMD.log, its PID in CMD.pid, then
// runs BODY (signals are taken between the 0.1 s sleeps).
function standIn(cmd: string, traps: string, body: string): string {
  const logFile = join(dir, `${cmd}.log`);
  const f = join(dir, cmd);
  writeFileSync(f, `#!/bin/bash
echo $$ > ${dir}/${cmd}.pid
${traps}
${body}
`);
  chmodSync(f, 0o755);
  writeFileSync(logFile, '');
  return logFile;
}
const signals = (logFile: string) => readFileSync(logFile, 'utf8').split('\n').filter(Boolean);
const alive = (cmd: string) => {
  try {
    process.kill(Number(readFileSync(join(dir, `${cmd}.pid`), 'utf8')), 0);
    return true;
  } catch {
    return false;
  }
};

test.serial('a VG change that outlives the timeout gets SIGINT only, is waited for, and its success stands', async (t) => {
  const logFile = standIn('lvcreate',
    `trap 'echo INT >> ${dir}/lvcreate.log' INT; trap 'echo TERM >> ${dir}/lvcreate.log' TERM`,
    'for i in $(seq 20); do sleep 0.1; done; echo created; exit 0');
  const r = await runLvm(['lvcreate', '-y', '-s', '-n', 'x', 'vg/lv'], 300);
  t.is(r.stdout, 'created', 'ran to its end');
  t.deepEqual(signals(logFile), ['INT'], 'one SIGINT, no SIGTERM');
  t.false(alive('lvcreate'));
});

test.serial('a VG change that gives up on SIGINT: SNAPSHOT error naming the command and the SIGINT', async (t) => {
  standIn('lvremove', `trap 'echo "  Giving up waiting for lock." >&2; exit 5' INT`, 'while :; do sleep 0.1; done');
  const err = await t.throwsAsync(runLvm(['lvremove', '-y', 'vg/x'], 300), { instanceOf: LvmError });
  t.is(err?.code, ExitCode.SNAPSHOT);
  t.regex(err?.message ?? '', /^lvremove -y vg\/x did not finish within 0\.3 s, and gave up when asked \(SIGINT\).*Giving up waiting for lock/);
  t.false(alive('lvremove'));
});

test.serial('a VG change that ignores SIGINT is never killed: runLvm waits for it', async (t) => {
  const logFile = standIn('lvchange', `trap 'echo INT >> ${dir}/lvchange.log' INT; trap 'echo TERM >> ${dir}/lvchange.log' TERM`,
    'for i in $(seq 60); do sleep 0.1; done; exit 0');
  const t0 = Date.now();
  await runLvm(['lvchange', '-y', '-ay', 'vg/x'], 200);
  t.true(Date.now() - t0 >= 6000, 'waited for its 6 s of work'); // a lower bound: holds on a loaded machine
  t.deepEqual(signals(logFile), ['INT']);
});

test.serial('a report (lvs) that outlives the timeout is killed (SIGTERM, then SIGKILL) and fails', async (t) => {
  const logFile = standIn('lvs', `trap 'echo TERM >> ${dir}/lvs.log' TERM; trap '' INT`, 'while :; do sleep 0.1; done');
  const err = await t.throwsAsync(runLvm(['lvs', '--reportformat', 'json'], 300), { instanceOf: LvmError });
  t.regex(err?.message ?? '', /^lvs --reportformat json did not finish within 0\.3 s \(LVM may be waiting/);
  t.deepEqual(signals(logFile), ['TERM']);
  t.false(alive('lvs'), 'killed');
});

test.serial('a report whose output is over MAX_CAPTURE: SNAPSHOT error saying so, not a half-read report', async (t) => {
  standIn('vgs', '', `head -c ${MAX_CAPTURE + 1} /dev/zero | tr '\\0' x; exit 0`);
  const err = await t.throwsAsync(runLvm(['vgs', '--reportformat', 'json'], 60_000), { instanceOf: LvmError });
  t.is(err?.code, ExitCode.SNAPSHOT);
  t.regex(err?.message ?? '', /^vgs --reportformat json: its output is over 16 MiB/);
});
