// docs/monitoring.md "works as written": its Icinga 2 and Nagios definitions are loaded into the
// real icinga2 (2.13) and nagios4 (4.4) binaries, and its command lines are run against a state
// dir made by a real `blkdelta run`. The doc's blocks are found by their first line (a comment
// naming the file each goes into). icinga2 validates with -C, then one daemon run (state, logs and
// run dir in a temp dir; stopped by PID) executes the CheckCommand so we see the argv it expands.
import test, { type ExecutionContext } from 'ava';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { BIN, jobsEnv, runBlkdelta, type JobsEnv } from './helpers/jobs.js';
import {
  ICINGA2, INSTALL_HINT, NAGIOS4, docBlock, icingaDefines, icingaObjects, icingaState, requireBinary, runIcingaUntil, runSync,
} from './helpers/monitoring.js';

const ICINGA_FILES = [
  '// /etc/icinga2/zones.d/global-templates/blkdelta.conf',
  '// /etc/icinga2/zones.d/master/db1.example.org.conf',
  '// /etc/icinga2/zones.d/master/blkdelta-tools.conf',
];
const NAGIOS_CFG = '# /etc/nagios4/conf.d/blkdelta.cfg';
const NRPE_CFG = '# /etc/nagios/nrpe.d/blkdelta.cfg';
const DEBIAN_OBJECTS = ['commands', 'contacts', 'timeperiods', 'templates'].map((f) => `/etc/nagios4/objects/${f}.cfg`);
const PING_CFG = '/etc/nagios-plugins/config/ping.cfg';

/** The first line of a plugin's output, as monitoring-plugins conventions want it. */
const okLine = (job: string, warn: number, crit: number) => new RegExp(
  `^BLKDELTA OK - ${job}: last success \\d+s ago \\(\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\), .* \\| 'age'=\\d+s;${warn};${crit};0; ` +
  `'duration'=\\d+s;43200;;0; 'compared'=\\d+B;;;0; 'changed'=\\d+B;;;0; 'sent'=\\d+B;;;0; 'written'=\\d+B;;;0;$`);

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-monitoring-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function put(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/** A config with these jobs, each run once successfully (1 MiB images). */
async function succeededJobs(t: ExecutionContext, jobs: string[]): Promise<JobsEnv> {
  const env = jobsEnv(t, jobs, { size: 1024 * 1024 });
  for (const job of jobs) {
    const r = await runBlkdelta(['run', job, '--config', env.config]);
    t.is(r.code, 0, `blkdelta run ${job}: ${r.stderr}`);
  }
  return env;
}

/** Runs a doc command line through /bin/sh as Nagios/NRPE do (as `user` if given): this checkout's
 * blkdelta, the config at `config` (as $BLKDELTA_CONFIG, standing in for /etc/blkdelta/blkdelta.toml). */
function runLine(line: string, config: string, user?: string) {
  if (!line.startsWith('/usr/bin/blkdelta ')) throw new Error(`not a blkdelta command line: ${line}`);
  const sh = ['/bin/sh', '-c', `${BIN} ${line.slice('/usr/bin/blkdelta '.length)}`];
  const argv = user ? ['runuser', '-u', user, '--', ...sh] : sh;
  return runSync(argv[0]!, argv.slice(1), { BLKDELTA_CONFIG: config });
}

test('icinga2 -C validates the doc\'s CheckCommand, apply rule, Host/Endpoint/Zone and Service: one Service per job', (t) => {
  requireBinary(ICINGA2);
  const dir = tempDir(t);
  const defines = icingaDefines(dir);
  for (const marker of ICINGA_FILES) put(join(dir, 'etc', marker.slice('// /etc/icinga2/'.length)), docBlock(marker));
  // What a master's own zones.conf and the stock icinga2.conf (abridged) provide.
  put(join(dir, 'etc', 'zones.conf'), `object Endpoint "master.example.org" {}
object Zone "master" { endpoints = [ "master.example.org" ] }
object Zone "global-templates" { global = true }
`);
  const conf = join(dir, 'etc', 'icinga2.conf');
  put(conf, `const PluginDir = "/usr/lib/nagios/plugins"\ninclude <itl>\ninclude <plugins>\ninclude "zones.conf"\n`);

  const v = runSync(ICINGA2, ['daemon', '-C', '-c', conf, ...defines]);
  t.is(v.status, 0, v.stdout + v.stderr);
  t.regex(v.stdout, /Instantiated 3 Services\./);
  t.regex(v.stdout, /Instantiated 1 Host\./);

  const list = runSync(ICINGA2, ['object', 'list', ...defines]);
  t.is(list.status, 0, list.stderr);
  const objects = icingaObjects(list.stdout);
  const services = [...objects.keys()].filter((k) => k.startsWith('Service ')).sort();
  t.deepEqual(services, ['Service db1.example.org!blkdelta tools', 'Service db1.example.org!blkdelta-db', 'Service db1.example.org!blkdelta-tools']);
  const db = objects.get('Service db1.example.org!blkdelta-db')!;
  t.regex(db, /\* blkdelta_job = "db"/);
  t.regex(db, /\* blkdelta_warning_age = "26h"/);
  t.regex(db, /\* command_endpoint = "db1.example.org"/);
  t.regex(objects.get('Service db1.example.org!blkdelta-tools')!, /\* blkdelta_job = "tools"/);
  t.regex(objects.get('CheckCommand blkdelta')!, /\* zone = "global-templates"/);
});

test('icinga2 runs the doc\'s CheckCommand for a job of the apply rule: the expected argv, BLKDELTA OK, exit 0', async (t) => {
  requireBinary(ICINGA2);
  const env = await succeededJobs(t, ['tools']);
  const dir = tempDir(t);
  const defines = icingaDefines(dir);
  const command = docBlock(ICINGA_FILES[0]!);
  t.true(command.includes('"/usr/bin/blkdelta"'), 'the CheckCommand runs /usr/bin/blkdelta');
  put(join(dir, 'cmd.conf'), command.replace('"/usr/bin/blkdelta"', JSON.stringify(BIN)));
  // The doc's apply rule, run here instead of by an agent, and due at once.
  const apply = /^apply Service[\s\S]*?^}/m.exec(docBlock(ICINGA_FILES[1]!))![0];
  put(join(dir, 'apply.conf'), apply.replace(/^\s*command_endpoint = .*\n/m, '').replace(/check_interval = \S+/, 'check_interval = 1s'));
  put(join(dir, 'host.conf'), `object Host "local" {
  check_command = "dummy"
  enable_active_checks = false
  vars.blkdelta_jobs["tools"] = { blkdelta_config = ${JSON.stringify(env.config)}, blkdelta_warning_age = "26h" }
}
`);
  const conf = join(dir, 'icinga2.conf');
  put(conf, 'include <itl>\ninclude "cmd.conf"\ninclude "apply.conf"\ninclude "host.conf"\nobject CheckerComponent "checker" {}\n');

  const log = await runIcingaUntil(['daemon', '-x', 'notice', '-c', conf, ...defines], /State Change: Checkable 'local!blkdelta-tools'/);
  const statePath = join(dir, 'data', 'icinga2.state');
  t.true(existsSync(statePath), `icinga2 left no state file:\n${log}`);
  const svc = icingaState(statePath).find((o) => o.type === 'Service' && o.name === 'local!blkdelta-tools');
  const cr = svc?.update.last_check_result as { command: string[]; exit_status: number; output: string; performance_data: string[] } | undefined;
  if (!cr) return t.fail(`no check result for local!blkdelta-tools:\n${log}`);
  t.deepEqual(cr.command, [BIN, 'check', 'tools', '--config', env.config, '--warning-age', '26h']);
  t.is(cr.exit_status, 0, cr.output);
  t.regex(cr.output, /^BLKDELTA OK - tools: last success \d+s ago/);
  t.is(cr.performance_data.length, 6);
  t.regex(cr.performance_data[0]!, /^age=\d+s;93600;172800;0;$/);
});

test('nagios4 -v verifies the doc\'s command and service (Debian\'s templates) with 0 errors, 0 warnings', (t) => {
  requireBinary(NAGIOS4);
  for (const f of [...DEBIAN_OBJECTS, PING_CFG]) t.true(existsSync(f), `${f} is missing: ${INSTALL_HINT}`);
  const dir = tempDir(t);
  put(join(dir, 'blkdelta.cfg'), docBlock(NAGIOS_CFG));
  put(join(dir, 'hosts.cfg'), 'define host {\n    use         linux-server\n    host_name   db1\n    address     192.0.2.10\n}\n');
  mkdirSync(join(dir, 'checkresults'));
  const files = [...DEBIAN_OBJECTS, PING_CFG, join(dir, 'hosts.cfg'), join(dir, 'blkdelta.cfg')];
  const cfg = join(dir, 'nagios.cfg');
  // Every path nagios writes points into the temp dir; it checks them as this user (not nagios).
  put(cfg, [
    ...files.map((f) => `cfg_file=${f}`),
    ...['log_file=nagios.log', 'object_cache_file=objects.cache', 'precached_object_file=objects.precache', 'status_file=status.dat',
      'lock_file=nagios.pid', 'temp_file=nagios.tmp', 'state_retention_file=retention.dat', 'command_file=nagios.cmd']
      .map((kv) => kv.replace('=', `=${dir}/`)),
    `temp_path=${dir}`, `check_result_path=${dir}/checkresults`, 'use_syslog=0', 'check_for_updates=0',
    `nagios_user=${userInfo().username}`, `nagios_group=${runSync('id', ['-gn']).stdout.trim()}`, 'illegal_macro_output_chars=`~$&|\'"<>', '',
  ].join('\n'));
  const v = runSync(NAGIOS4, ['-v', cfg]);
  t.is(v.status, 0, v.stdout + v.stderr);
  t.regex(v.stdout, /Checked 1 services\./);
  t.regex(v.stdout, /Total Warnings: 0\n/);
  t.regex(v.stdout, /Total Errors: +0\n/);
});

test('the doc\'s Nagios command line, expanded with its service\'s arguments, prints BLKDELTA OK and exits 0', async (t) => {
  const env = await succeededJobs(t, ['tools']);
  const block = docBlock(NAGIOS_CFG);
  const name = /command_name\s+(\S+)/.exec(block)![1];
  const line = /command_line\s+(.+)$/m.exec(block)![1]!.trim();
  const [cmd, ...args] = /check_command\s+(\S+)/.exec(block)![1]!.split('!');
  t.is(cmd, name);
  const expanded = line.replace(/\$ARG(\d+)\$/g, (_, n: string) => args[Number(n) - 1] ?? '');
  t.is(expanded, '/usr/bin/blkdelta check tools --warning-age 36h --critical-age 2d');
  const r = runLine(expanded, env.config);
  t.is(r.status, 0, r.stdout + r.stderr);
  t.regex(r.stdout.split('\n')[0]!, okLine('tools', 129600, 172800));
});

test('the doc\'s NRPE commands, run as the nagios user like NRPE, print BLKDELTA OK and exit 0', async (t) => {
  t.is(runSync('id', ['-u', 'nagios']).status, 0, `no nagios user (nagios4-common creates it): ${INSTALL_HINT}`);
  const env = await succeededJobs(t, ['tools', 'db']);
  const lines = [...docBlock(NRPE_CFG).matchAll(/^command\[(\w+)\]=(.+)$/gm)].map((m) => [m[1]!, m[2]!] as const);
  t.deepEqual(lines.map(([n]) => n), ['check_blkdelta_tools', 'check_blkdelta_all']);
  for (const [nrpeName, line] of lines) {
    const r = runLine(line, env.config, 'nagios');
    t.is(r.status, 0, `${nrpeName}: ${r.stdout}${r.stderr}`);
    if (nrpeName === 'check_blkdelta_tools') t.regex(r.stdout.split('\n')[0]!, okLine('tools', 129600, 172800));
    else t.regex(r.stdout.split('\n')[0]!, /^BLKDELTA OK - .*\| .*'tools_age'=\d+s;129600;172800;0; .*'db_age'=\d+s;129600;172800;0;/);
  }
});
