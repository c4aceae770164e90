# Thin-pool guards and pull with a source snapshot, for test/pool-vm.test.ts: run as root inside
# the VM by run-vm.sh (guest: /dev/vda is a blank disk, cwd is the checkout, dist/ is built). The
# VM has no sshd: a pull goes through --rsh with rsh.sh below, which drops the host name and runs
# `blkdelta server` here (its PID recorded), so the server end makes, watches and removes the
# snapshot exactly as on a source host. Facts: "R <scenario> <key> <value>" (newlines become "|").
# usage: pool-scenarios.sh [SCENARIO...]   (default: all)
set -u
export LVM_SUPPRESS_FD_WARNINGS=1
BD="node bin/blkdelta"
W=/tmp/bd && mkdir -p $W

. test/vm/lib.sh   # R q lv fill zero digest same tagged wait_written bd make_rsh
lvcount() { lvs --noheadings -o lv_name vg0 2>/dev/null | wc -l; }
poolfill() { lvs --noheadings -o data_percent vg0/$1 | tr -d ' '; }

make_rsh $W/rsh.sh   # --rsh for a VM without sshd (lib.sh)
PULL="--rsh $W/rsh.sh --remote-cmd"
BDR="node $PWD/bin/blkdelta"

pull() {   # COW and thin origins pulled with --snapshot localhost:VG/LV: the server snapshots, the target converges, nothing is left
  lv p_src 16M; fill p_src 16
  lv p_dst 16M; zero p_dst 1
  bd pull sync --no-progress --json $PULL "$BDR" --snapshot localhost:vg0/p_src /dev/vg0/p_dst
  R pull same "$(same p_src p_dst)"; R pull left "$(tagged blkdelta-source)"
  q lvcreate -y --type thin-pool -L 64M -n ppool vg0
  q lvcreate -y -V 16M -T vg0/ppool -n pt_src; fill pt_src 16
  bd pullthin sync --no-progress --json $PULL "$BDR" --snapshot ssh://root@localhost:22/vg0/pt_src /dev/vg0/p_dst
  R pullthin same "$(same pt_src p_dst)"; R pullthin left "$(tagged blkdelta-source)"
}

guard_before() {   # a thin pool at 94%: a local and a pulled snapshot are both refused, nothing created
  q lvcreate -y --type thin-pool -L 32M -n gpool vg0
  q lvcreate -y -V 40M -T vg0/gpool -n g_src; fill g_src 30
  lv g_dst 40M
  R guard_before fill "$(poolfill gpool)"
  local before; before=$(lvcount)
  bd guard_local sync --no-progress --snapshot vg0/g_src /dev/vg0/g_dst
  R guard_before after_local "$(lvcount)"
  bd guard_pull sync --no-progress $PULL "$BDR" --snapshot localhost:vg0/g_src /dev/vg0/g_dst
  R guard_before after_pull "$(lvcount)"; R guard_before lvs_before "$before"
  bd guard_raised sync --no-progress --json --pool-max-fill 99 --snapshot vg0/g_src /dev/vg0/g_dst
  R guard_before same_raised "$(same g_src g_dst)"; R guard_before left "$(tagged blkdelta-source)"
}

# A writer that rewrites 40 MiB of the origin, 1 MiB at a time (production under load); its dd
# errors and status are facts. Without the guard the pool would overflow (origin 96 MiB in a
# 128 MiB pool: 40 MiB more is 106%) and, with --errorwhenfull y, its writes would fail.
writer() { local ok=0; for i in $(seq 0 39); do dd if=/dev/urandom of=/dev/vg0/$1 bs=1M seek=$i count=1 oflag=direct conv=notrunc status=none 2>>$W/writer.err || ok=1; sleep 0.2; done; echo $ok > $W/writer.rc; }

guard_during() {   # a pull whose server sees the pool cross 90%: aborted (14), snapshot removed, the writer sees no error
  q lvcreate -y --type thin-pool -L 128M -n dpool vg0
  q lvchange -y --errorwhenfull y vg0/dpool
  q lvcreate -y -V 96M -T vg0/dpool -n d_src; fill d_src 96
  lv d_dst 96M; zero d_dst 1
  R guard_during fill_before "$(poolfill dpool)"
  $BD sync --no-progress --bwlimit 2M $PULL "$BDR" --snapshot localhost:vg0/d_src /dev/vg0/d_dst > $W/during.out 2> $W/during.err &
  local pid=$!
  wait_written d_dst
  writer d_src
  wait $pid; R guard_during rc $?; R guard_during err "$(cat $W/during.err)"
  R guard_during writer_rc "$(cat $W/writer.rc)"; R guard_during writer_err "$(cat $W/writer.err 2>/dev/null)"
  R guard_during left "$(tagged blkdelta-source)"; R guard_during fill_after "$(poolfill dpool)"
  R guard_during errorwhenfull "$(lvs --noheadings -o lv_when_full vg0/dpool | tr -d ' ')"
  R guard_during dmesg "$(dmesg | grep -i 'no free data space\|out of data space\|switching pool to' | tail -3)"
}

kill9() {   # kill -9 of the server mid-pull leaves its snapshot; the next pull of the job removes it and converges
  lv k_src 16M; fill k_src 16
  lv k_dst 16M; zero k_dst 1
  $BD sync --no-progress --bwlimit 1M --job kjob $PULL "$BDR" --snapshot localhost:vg0/k_src /dev/vg0/k_dst > $W/kill9.out 2> $W/kill9.err &
  local pid=$!
  wait_written k_dst
  kill -KILL "$(cat $W/server.pid)"
  wait $pid; R kill9 rc $?; R kill9 err "$(cat $W/kill9.err)"
  R kill9 left_after_kill "$(tagged blkdelta-source)"
  R kill9 stale "$(lvs --noheadings -o lv_name,lv_tags vg0 | awk '/blkdelta-job:kjob/ { print $1 }')"
  bd kill9_rerun sync --no-progress --json --job kjob $PULL "$BDR" --snapshot localhost:vg0/k_src /dev/vg0/k_dst
  R kill9 same "$(same k_src k_dst)"; R kill9 left "$(tagged blkdelta-source)"
}

q pvcreate -y /dev/vda; q vgcreate vg0 /dev/vda
for s in ${@:-pull guard_before guard_during kill9}; do
  t0=$(cut -d' ' -f1 /proc/uptime)
  $s
  R $s seconds "$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')"
done
