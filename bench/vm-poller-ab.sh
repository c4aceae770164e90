# A/B of the source snapshot's fill poller in one VM boot (so both builds see the same host load):
# run as root inside the VM by test/vm/run-vm.sh, with two built checkouts of blkdelta:
#   VM_DISKS=16G VM_TIMEOUT=1800 bash test/vm/run-vm.sh bench/vm-poller-ab.sh OLD_DIR NEW_DIR [MiB]
# A thin LV of MiB (default 1024) random data, a plain target, a base set by a first incremental
# run; then, alternately with OLD and NEW, 1% rewritten in scattered 64 KiB pieces and an
# incremental run (twice each), then a full compare each (--snapshot, no --incremental).
# Facts: "R <build>_<run> wall|cpu|lvs|dmsetup" (seconds; cpu = user+sys of blkdelta and its
# children: lvm and dmsetup included; lvs / dmsetup = how many it ran, from BLKDELTA_DEBUG), and
# the cost of one lvs of the VG against one dmsetup status of a thin snapshot and its pool.
set -u
export LVM_SUPPRESS_FD_WARNINGS=1
OLD=$1 NEW=$2 M=${3:-1024}
W=/tmp/ab && mkdir -p $W
R() { printf 'R %s %s %s\n' "$1" "$2" "$3"; }
q() { "$@" >/dev/null 2>>$W/setup.err || { echo "setup failed: $*: $(cat $W/setup.err)" >&2; exit 1; }; }
run() {   # name dir args...: one sync with that build
  local n=$1 d=$2; shift 2
  BLKDELTA_DEBUG=1 /usr/bin/time -f '%e %U %S' -o $W/$n.time node $d/bin/blkdelta sync --no-progress --json "$@" > $W/$n.json 2> $W/$n.err || { echo "$n failed: $(grep -v debug: $W/$n.err)" >&2; exit 1; }
  R $n wall "$(cut -d' ' -f1 $W/$n.time)"; R $n cpu "$(awk '{ printf "%.2f", $2 + $3 }' $W/$n.time)"
  R $n lvs "$(grep -c 'debug: running lvs' $W/$n.err)"; R $n dmsetup "$(grep -c 'debug: running dmsetup status' $W/$n.err)"
}
change() { local i; for i in $(seq 0 $((M * 16 / 100 - 1))); do q dd if=/dev/urandom of=/dev/vg0/src bs=64k seek=$((i * 99 + (i * 37 + $1) % 50)) count=1 oflag=direct conv=notrunc status=none; done; }
percall() {   # name, command...: mean seconds of 10 calls
  local t0 t1; t0=$(cut -d' ' -f1 /proc/uptime)
  for _ in 1 2 3 4 5 6 7 8 9 10; do "${@:2}" >/dev/null 2>&1; done
  t1=$(cut -d' ' -f1 /proc/uptime); R percall "$1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 10 }')"
}
q pvcreate -y /dev/vda; q vgcreate vg0 /dev/vda
q lvcreate -y --type thin-pool -L $((M + M / 8 + 64))M -n pool vg0
q lvcreate -y -V ${M}M -T vg0/pool -n src
q dd if=/dev/urandom of=/dev/vg0/src bs=4M count=$((M / 4)) oflag=direct status=none
q lvcreate -y -L ${M}M -n dst vg0
q dd if=/dev/vg0/src of=/dev/vg0/dst bs=4M iflag=direct oflag=direct status=none
INC="--incremental --state-dir $W/state --job ab"
run setup "$NEW" $INC --snapshot vg0/src /dev/vg0/dst
q lvcreate -y -s -kn -n probe vg0/src
percall lvs lvs --reportformat json --units b --nosuffix -o lv_name,lv_attr vg0
percall dmsetup dmsetup status --noflush vg0-probe vg0-pool-tpool
q lvremove -y vg0/probe
k=0
for i in 1 2; do
  for b in old new; do
    k=$((k + 1)); change $k
    d=$OLD; [ $b = new ] && d=$NEW
    run ${b}_inc$i "$d" $INC --snapshot vg0/src /dev/vg0/dst
  done
done
for b in old new; do
  d=$OLD; [ $b = new ] && d=$NEW
  run ${b}_full "$d" --snapshot vg0/src --job abfull /dev/vg0/dst
done
cmp -s /dev/vg0/src /dev/vg0/dst && R check same yes || R check same no
