// History of target copies on real LVM in a throwaway QEMU VM (this machine's kernel has no
// device-mapper): one boot runs test/vm/history-scenarios.sh (thin and COW targets, a rollback by
// merge, restore, verify of a copy damaged by hand, pool_max_fill) and prints
// "R <scenario> <key> <value>" facts asserted here.
// Needs qemu-system-x86 busybox-static xz-utils lvm2 thin-provisioning-tools and a built dist/.
import test from 'ava';
import { vmLane } from './helpers/vm.js';
import type { HistoryEntry } from '../src/history/copies.js';
import type { JobState } from '../src/jobs/state.js';

const facts = vmLane('test/vm/history-scenarios.sh', { timeoutS: 2400 }); // a loaded host slows the TCG guest a lot

const list = (s: string) => (JSON.parse(s.replace(/\|/g, '\n')) as { version: number; copies: HistoryEntry[] }).copies;
const names = (s: string) => s.split('|').filter((x) => x !== '');

test('thin target: each run leaves a labelled copy; keep_last 3 = the live target and two copies', async (t) => {
  const f = await facts(t, 'thin');
  for (const k of ['1rc', '2rc', '3rc']) t.is(f(k), '0', f(k.replace('rc', 'err')));
  const [c1, c2] = names(f('copies3'));
  t.deepEqual(names(f('copies3')).length, 2, f('copies3'));
  t.regex(c1!, /^h_dst-blkdelta-tgt-hthin-\d{8}T\d{6}Z$/);
  t.is(f('listrc'), '0', f('listerr'));
  const entries = list(f('listout'));
  t.like(entries[0], { id: 'h_dst', lv: 'vg0/h_dst', live: true, state: 'live', kind: 'thin', size: 8 << 20 });
  t.deepEqual(entries.slice(1).map((e) => e.id), [c2, c1], 'newest data first');
  for (const e of entries.slice(1)) {
    t.like(e, { kind: 'thin', size: 8 << 20, state: 'good' });
    t.regex(e.dataTime ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/, 'the data time of the run that made the content');
    t.regex(e.fingerprint?.digest ?? '', /^[0-9a-f]{16}$/);
  }
  t.true(Date.parse(entries[0]!.dataTime!) > Date.parse(entries[1]!.dataTime!));
  t.true(Date.parse(entries[1]!.dataTime!) > Date.parse(entries[2]!.dataTime!));
});

test('thin target: each listed point restores to the data of the run that made it, and is still there after', async (t) => {
  const f = await facts(t, 'thin');
  t.is(f('r1rc'), '0', f('r1err'));
  t.is(f('r2rc'), '0', f('r2err'));
  t.regex(f('r1out'), /^restored vg0\/h_dst-blkdelta-tgt-hthin-\S+ to \/dev\/vg0\/h_r1: 8\.0 MiB written, matches the copy's fingerprint/);
  t.is(f('r1sha'), f('d1'), 'the copy taken before run 2 holds run 1\'s data');
  t.is(f('r2sha'), f('d2'), 'the copy taken before run 3 holds run 2\'s data');
  t.is(f('c1after'), f('d1'), 'the copy is unchanged by the restore');
  t.is(f('c2after'), f('d2'));
  t.is(f('active_after'), '', 'a thin copy is deactivated again after the restore');
  t.is(f('copies_after_restore'), f('copies3'), 'no copy consumed');
});

test('thin target: across a rollback by merge no copy is orphaned and the count stays exact', async (t) => {
  const f = await facts(t, 'thin');
  t.is(f('rolled'), f('d1'), 'the merge rolled the target back to run 1');
  t.is(f('orphan_origin'), '', 'the other copy lost its origin');
  t.is(f('4rc'), '0', f('4err'));
  t.regex(f('4err'), /the target was changed outside blkdelta since its last good run \(a rollback\?\); relabelled/);
  t.is(f('5rc'), '0', f('5err'));
  t.is(f('live_same'), 'yes');
  const after = names(f('copies5'));
  t.is(after.length, 2, f('copies5'));
  t.false(after.includes(names(f('copies3'))[1]!), 'the copy whose origin was merged away is pruned like any other');
});

test('thin target: history verify passes, then names the copy damaged by hand (exit 3); check goes CRITICAL', async (t) => {
  const f = await facts(t, 'thin');
  t.is(f('v1rc'), '0', f('v1out') + f('v1err'));
  t.regex(f('v1out'), /^OK +\S+ \(vg0\/\S+\): fingerprint [0-9a-f]{16} matches\|OK /);
  t.is(f('v2rc'), '3', f('v2out') + f('v2err'));
  const bad = f('damaged');
  t.regex(f('v2out'), new RegExp(`DAMAGED +${bad} \\(vg0/${bad}\\): content differs from its fingerprint`));
  t.regex(f('v2err'), new RegExp(`job hthin: 1 damaged copy: ${bad} \\(vg0/${bad}\\)`));
  t.is(f('checkrc'), '2', f('checkout'));
  t.regex(f('checkout'), new RegExp(`^BLKDELTA CRITICAL - hthin: history verify at \\S+ found damaged copies: ${bad} \\(vg0/${bad}\\)`));
  t.regex(f('checkout'), /'copies'=2;;;0;/);
});

test('COW target: copies are COW snapshots; the newest restores to the data of the run before the last', async (t) => {
  const f = await facts(t, 'cow');
  for (const k of ['1rc', '2rc', '3rc']) t.is(f(k), '0', f(k.replace('rc', 'err')));
  t.is(names(f('copies')).length, 2, 'keep = 3 (keep_last): the live target and two copies (the copy of the first run overflowed: removed)');
  t.regex(f('1err'), /overflowed \(it is not a usable copy\): removing it/);
  const entries = list(f('listout'));
  t.like(entries[0], { live: true, kind: 'cow' });
  t.true(entries.slice(1).every((e) => e.kind === 'cow' && e.size === 8 << 20 && e.state === 'good'));
  t.is(f('rrc'), '0', f('rerr'));
  t.is(f('rsha'), f('d2'));
  t.is(f('after'), f('d2'), 'the COW copy still holds it');
});

test('pool_max_fill: copies kept as space allows, pruned oldest first while over; a pool over the limit refuses the run', async (t) => {
  const f = await facts(t, 'pool');
  for (const k of ['1rc', '2rc', '3rc']) t.is(f(k), '0', f(k.replace('rc', 'err')));
  t.is(names(f('copies2')).length, 2, 'below the limit the extra copy stays');
  t.true(Number(f('fill3')) < 60, `pool pruned below pool_max_fill: ${f('fill3')}%`);
  t.is(names(f('copies3')).length, 1, f('copies3'));
  t.regex(f('3err'), /removed \S+ \(pool\)/);
  t.is(f('dryrc'), '0', f('dryerr'));
  t.regex(f('dryout'), /keep \S+ \(newest/);
  t.is(f('fullrc'), '13', f('fullerr'));
  t.regex(f('fullerr'), /target vg0\/p_dst refused before the first write: thin pool vg0\/pp data is [\d.]+% full, at or above pool_max_fill 40%; free space with `blkdelta history prune hfull`/);
  t.is(f('full_same'), 'yes', 'nothing written');
  t.is(f('full_copies'), '0', 'no copy taken');
});

test('a good run records the fingerprint of the content it left: the live target carries the same label', async (t) => {
  const f = await facts(t, 'thin');
  const state = JSON.parse(f('record').replace(/\|/g, '\n')) as JobState;
  const last = state.runs[0]!;
  t.is(last.outcome, 'success');
  t.like(last.fingerprint, { algo: 'xxh64-blocks', blockSize: 4096, size: 8 << 20 });
  t.deepEqual(last.fingerprint, list(f('listout'))[0]!.fingerprint ?? undefined);
  t.like(last.targetSnapshot?.history, { copies: 2 });
});

test('a remote target through its server: list, restore (local DEST and on the server), verify, the client\'s verify record', async (t) => {
  const f = await facts(t, 'remote');
  for (const k of ['1rc', '2rc', '3rc']) t.is(f(k), '0', f(k.replace('rc', 'err')));
  const c1 = f('c1'), c2 = f('c2');
  const all = names(f('copies3'));
  t.is(all.length, 3, 'keep_last 3 keeps the live target and two copies; the server\'s default pool_max_fill 90 keeps the first (of the empty target) as space allows');
  t.deepEqual(all.slice(1), [c1, c2]);
  t.is(f('listrc'), '0', f('listerr'));
  const entries = list(f('listout'));
  t.like(entries[0], { id: 'rm_dst', lv: 'vg0/rm_dst', live: true, state: 'live', kind: 'thin', size: 8 << 20 });
  t.deepEqual(entries.slice(1, 3).map((e) => e.id), [c2, c1], 'newest data first, as a local list');
  for (const e of entries.slice(1, 3)) {
    t.like(e, { kind: 'thin', size: 8 << 20, state: 'good' });
    t.regex(e.fingerprint?.digest ?? '', /^[0-9a-f]{16}$/);
    t.regex(e.dataTime ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/, 'the data time of the run that made the content (the client hashed with the label\'s seed)');
  }
  t.regex(f('listtout'), /^ID +DATA TIME +KIND +SIZE +FINGERPRINT +STATE\|rm_dst +\S+ +thin +8\.0 MiB +[0-9a-f]{16} +live\|/);
  t.is(f('r1rc'), '0', f('r1err'));
  t.regex(f('r1out'), new RegExp(`^restored localhost:vg0/${c1} to /tmp/bdh/rm_r1\\.img: 8\\.0 MiB written, matches the copy's fingerprint`));
  t.is(f('r1sha'), f('d1'), 'the copy taken before run 2, pulled back to a local file, holds run 1\'s data');
  t.is(f('r2rc'), '0', f('r2err'));
  t.regex(f('r2out'), new RegExp(`^restored localhost:vg0/${c2} to localhost:/dev/vg0/rm_r2: 8\\.0 MiB written, matches the copy's fingerprint`));
  t.is(f('r2sha'), f('d2'), 'restored on the server host itself: run 2\'s data');
  t.is(f('c1after'), f('d1'), 'the copies are unchanged');
  t.is(f('c2after'), f('d2'));
  t.is(f('active_after'), '', 'a thin copy is deactivated again after it was read');
  t.is(f('copies_after_restore'), f('copies3'), 'no copy consumed');
  t.is(f('v1rc'), '0', f('v1out') + f('v1err'));
  t.regex(f('v1out'), /^OK +\S+ \(vg0\/\S+\): fingerprint [0-9a-f]{16} matches\|OK /);
  t.is(f('v2rc'), '3', f('v2out') + f('v2err'));
  t.regex(f('v2out'), new RegExp(`DAMAGED +${c2} \\(vg0/${c2}\\): content differs from its fingerprint`));
  t.regex(f('v2err'), new RegExp(`job hremote: 1 damaged copy: ${c2} \\(vg0/${c2}\\)`));
  const rec = JSON.parse(f('record').replace(/\|/g, '\n')) as { job: string; copies: Array<{ id: string; result: string }> };
  t.is(rec.job, 'hremote', 'the verify is recorded on the client, where `check` reads it');
  t.is(rec.copies.find((c) => c.id === c2)?.result, 'damaged');
  t.is(rec.copies.find((c) => c.id === c1)?.result, 'ok');
});

test('a remote target through its server: its policy holds (read_only, allow, unknown or odd ids); prune applies the server\'s retention', async (t) => {
  const f = await facts(t, 'remote');
  t.is(f('rorc'), '12', f('roerr'));
  t.regex(f('roerr'), /refused by the server: history prune removes copies of \/dev\/vg0\/rm_dst: the server runs with --read-only/);
  t.is(f('narrowrc'), '12', f('narrowerr'));
  t.regex(f('narrowerr'), /device \/dev\/vg0\/rm_dst.* is outside the server's --allow list \(\/dev\/vg0\/rm_src\)/);
  t.is(f('nocopyrc'), '2', f('nocopyerr'));
  t.regex(f('nocopyerr'), /job hremote has no copy "rm_dst-nosuch" \(copies: /);
  t.is(f('oddidrc'), '9', f('oddiderr'));
  t.regex(f('oddiderr'), /malformed HELLO: history\.id: LV name "x\/\.\.\/\.\.\/etc" may only contain/);
  t.is(f('outsiderc'), '12', f('outsideerr'));
  t.regex(f('outsideerr'), /device \/dev\/vg0\/h_none.* is outside the server's --allow list/);
  t.is(f('copies_after_refusals'), f('copies3'));
  t.is(f('dryrc'), '0', f('dryerr'));
  t.regex(f('dryout'), /^retention of the server at localhost \(\[server\.target_snapshot\]\): keep_last 3, pool_max_fill 90%\|/);
  t.regex(f('dryout'), new RegExp(`keep ${f('c2')} \\(newest, last\\)`));
  t.regex(f('dryout'), /3 copies kept, 0 removed$/);
  t.is(f('prunerc'), '0', f('pruneerr'));
  t.regex(f('pruneout'), /^retention of the server at localhost \(\[server\.target_snapshot\]\): keep_last 2, pool_max_fill 1%\|removed \S+/);
  t.deepEqual(names(f('copies_after_prune')), [f('c2')], 'keep_last = 2: the live target and the newest copy');
});
