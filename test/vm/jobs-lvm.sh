# Jobs on real LVM, for test/jobs-lvm-vm.test.ts, run as root inside the VM by run-vm.sh (guest:
# /dev/vda is a blank disk, cwd is the checkout, dist/ is built). Prints "R <scenario> <key> <value>"
# facts (newlines become "|"). Only the blkdelta CLI and shell run here (JS is slow in the VM).
set -u
export LVM_SUPPRESS_FD_WARNINGS=1
BD="node bin/blkdelta"
W=/tmp/bdj && mkdir -p $W/state
CFG=$W/blkdelta.toml

. test/vm/lib.sh   # R q lv fill digest same tagged bdk (wait_written is redefined below)
# waits (up to 10 min: the VM is slow, more so on a loaded host) until the source snapshot exists
# and the first MiB of the (zeroed) target is no longer zero: the run is syncing
wait_written() {
  for _ in $(seq 3000); do
    [ "$(tagged blkdelta-source)" = 1 ] && ! cmp -s -n 1048576 /dev/vg0/$1 /dev/zero && return 0
    sleep 0.2
  done
  echo "timeout waiting for writes to $1" >&2
}

cat > $CFG <<TOML
state_dir = "$W/state"
max_concurrent = 2

[jobs.lvjob]
source = "/dev/vg0/j_src"
target = "/dev/vg0/j_dst"
snapshot = true
snapshot_size = "8M"
target_snapshot = true
target_snapshot_size = "16M"
keep = 1
verify = true

[jobs.killed]
source = "/dev/vg0/k_src"
target = "/dev/vg0/k_dst"
snapshot = "vg0/k_src"
snapshot_size = "8M"
bwlimit = "1M"
TOML

jobrun() {   # two runs of a job with source and target snapshots: records, snapshots, check
  lv j_src 16M; fill j_src 16; lv j_dst 16M
  bdk jobrun 1 run lvjob --config $CFG
  R jobrun same1 "$(same j_src j_dst)"
  fill j_src 4
  bdk jobrun 2 run lvjob --config $CFG
  R jobrun same2 "$(same j_src j_dst)"
  R jobrun record "$(cat $W/state/lvjob.json)"
  R jobrun source_snaps "$(tagged blkdelta-source)"; R jobrun target_snaps "$(tagged blkdelta-target)"
  R jobrun pending "$(tagged blkdelta-pending)"
  bdk jobrun check check lvjob --config $CFG
}

killed() {   # SIGKILL mid-run: the record says running, check says killed; the next run cleans up
  lv k_src 16M; fill k_src 16; lv k_dst 16M; q dd if=/dev/zero of=/dev/vg0/k_dst bs=1M count=1 oflag=direct status=none
  $BD run killed --config $CFG > $W/killed.out 2> $W/killed.err &
  local pid=$!
  wait_written k_dst; kill -KILL $pid; wait $pid
  R killed pid $pid
  R killed left_after_kill "$(tagged blkdelta-source)"
  bdk killed check check killed --config $CFG
  bdk killed 2 run killed --config $CFG
  R killed same "$(same k_src k_dst)"; R killed left "$(tagged blkdelta-source)"
  R killed record "$(cat $W/state/killed.json)"
}

q pvcreate -y /dev/vda; q vgcreate vg0 /dev/vda
for s in ${@:-jobrun killed}; do
  t0=$(cut -d' ' -f1 /proc/uptime)
  $s
  R $s seconds "$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')"
done
