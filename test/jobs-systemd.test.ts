// The systemd units pass `systemd-analyze verify` with no warning (ExecStart pointed at this
// checkout's bin/blkdelta, since verify checks that the binary exists), and say what the issue asks.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN } from './helpers/jobs.js';
import { DEFAULT_THRESHOLDS } from '../src/jobs/config.js';
import { parseDuration } from '../src/units.js';

const UNITS = fileURLToPath(new URL('../../systemd/', import.meta.url));
const service = readFileSync(join(UNITS, 'blkdelta@.service'), 'utf8');
const timer = readFileSync(join(UNITS, 'blkdelta@.timer'), 'utf8');

function analyze(): string {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('systemd-analyze not found: apt-get install systemd');
  }
  return 'systemd-analyze';
}

test('systemd-analyze verify passes on the service and the timer, without warnings', (t) => {
  const bin = analyze();
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-units-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.true(service.includes('\nExecStart=/usr/local/bin/blkdelta run %i\n'));
  writeFileSync(join(dir, 'blkdelta@.service'), service.replace('ExecStart=/usr/local/bin/blkdelta', `ExecStart=${BIN}`));
  writeFileSync(join(dir, 'blkdelta@.timer'), timer);
  const r = spawnSync(bin, ['verify', '--man=no', join(dir, 'blkdelta@tools.service'), join(dir, 'blkdelta@tools.timer')], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const ours = r.stderr.split('\n').filter((l) => l.includes('blkdelta@'));
  t.deepEqual(ours, [], 'verify printed warnings about our units');
});

test('verify does catch a broken unit (so the test above means something)', (t) => {
  const bin = analyze();
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-units-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'blkdelta@.service'), service.replace('ExecStart=/usr/local/bin/blkdelta', `ExecStart=${BIN}`).replace('Nice=19', 'Nice=19\nNicety=1'));
  writeFileSync(join(dir, 'blkdelta@.timer'), timer.replace(/^OnCalendar=.*$/m, 'OnCalendar=nightlyish'));
  const r = spawnSync(bin, ['verify', '--man=no', join(dir, 'blkdelta@tools.service'), join(dir, 'blkdelta@tools.timer')], { encoding: 'utf8' });
  t.not(r.status, 0);
  t.regex(r.stderr, /Unknown key 'Nicety'/);
  t.regex(r.stderr, /Failed to parse calendar specification/);
});

const has = (unit: string, line: string) => new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm').test(unit);

test('service: oneshot, gentle scheduling, explicit start timeout, hardening that keeps block devices and LVM', (t) => {
  for (const l of ['Type=oneshot', 'Nice=19', 'IOSchedulingClass=best-effort', 'IOSchedulingPriority=7', 'CPUWeight=20', 'IOWeight=20',
    'TimeoutStartSec=13h', 'UMask=0077', 'SystemCallFilter=@system-service', 'SystemCallFilter=~@privileged', 'DevicePolicy=closed', 'DeviceAllow=block-* rw', 'DeviceAllow=block-device-mapper rw',
    'ReadWritePaths=-/etc/lvm -/run/lock/lvm', 'StateDirectory=blkdelta']) {
    t.true(has(service, l), l);
  }
  t.false(/^PrivateDevices=/m.test(service));
  t.false(/^\[Install\]/m.test(service), 'the timer is enabled, never the service');
  t.regex(service, /^CapabilityBoundingSet=CAP_SYS_ADMIN /m);
  t.regex(service, /^Documentation=man:blkdelta\(1\)/m);
  t.false(/^MemoryDenyWriteExecute=/m.test(service));
});

test('timer: nightly, randomized, small accuracy, persistent', (t) => {
  for (const l of ['OnCalendar=*-*-* 01:00:00', 'RandomizedDelaySec=2h', 'AccuracySec=1s', 'Persistent=true']) t.true(has(timer, l), l);
});

test('TimeoutStartSec is longer than the default max_duration, so that the check warns first', (t) => {
  const timeout = parseDuration(/^TimeoutStartSec=(\S+)$/m.exec(service)![1]!);
  t.true(timeout > DEFAULT_THRESHOLDS.maxDuration, `${timeout} s vs max_duration ${DEFAULT_THRESHOLDS.maxDuration} s`);
});

test('systemd-analyze security rates the service 4.5 or better', (t) => {
  const bin = analyze();
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-units-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'blkdelta@.service'), service.replace('ExecStart=/usr/local/bin/blkdelta', `ExecStart=${BIN}`));
  const r = spawnSync(bin, ['security', '--offline=yes', '--no-pager', join(dir, 'blkdelta@tools.service')], { encoding: 'utf8' });
  const level = /Overall exposure level for blkdelta@tools\.service: (\d+\.\d+)/.exec(r.stdout);
  t.truthy(level, r.stdout + r.stderr);
  t.true(Number(level![1]) <= 4.5, `exposure ${level![1]}`);
});
