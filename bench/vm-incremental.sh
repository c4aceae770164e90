# Guest side of the bench's VM section (bench/incremental-case.ts): run as root inside the VM by
# test/vm/run-vm.sh (blank /dev/vda, cwd the checkout, dist/ built). For each size in MiB given as
# an argument (default 1024 4096): a thin LV of random data, two plain LV targets made equal to it, a base set
# by a first incremental run on target A; then 1% of the source rewritten in scattered 64 KiB
# pieces, and the same change synced twice: incremental into A, full compare into B; then all of
# it removed. Facts: "R <case>_<mib> <key> <value>" and "R size <mib>" per size.
set -u
export LVM_SUPPRESS_FD_WARNINGS=1
W=/tmp/bench && mkdir -p $W
BD="node bin/blkdelta"
R() { printf 'R %s %s %s\n' "$1" "$2" "$3"; }
q() { "$@" >/dev/null 2>>$W/setup.err || { echo "setup failed: $*: $(cat $W/setup.err)" >&2; exit 1; }; }
field() { node -e 'const s=JSON.parse(require("fs").readFileSync(0,"utf8")); console.log(process.argv[1].split(".").reduce((o,k)=>o?.[k],s))' "$1" < $W/$2.json; }
measure() {   # case, then the blkdelta arguments: wall seconds and peak RSS (KiB) from GNU time
  local c=$1; shift
  /usr/bin/time -f '%e %M' -o $W/$c.time $BD sync --no-progress --json "$@" > $W/$c.json 2> $W/$c.err || { echo "$c failed: $(cat $W/$c.err)" >&2; exit 1; }
  R $c wall "$(cut -d' ' -f1 $W/$c.time)"; R $c rss_kib "$(cut -d' ' -f2 $W/$c.time)"
  R $c read_source "$(field bytesReadSource $c)"; R $c read_target "$(field bytesReadTarget $c)"
  R $c kind "$(field incremental.kind $c)"; R $c differing "$(field blocksDiffering $c)"
}
one() {   # one size in MiB
  local m=$1 t
  q lvcreate -y --type thin-pool -L $((m + m / 8 + 64))M -n pool vg0
  q lvcreate -y -V ${m}M -T vg0/pool -n src
  q dd if=/dev/urandom of=/dev/vg0/src bs=4M count=$((m / 4)) oflag=direct status=none
  for t in a b; do q lvcreate -y -L ${m}M -n dst_$t vg0; q dd if=/dev/vg0/src of=/dev/vg0/dst_$t bs=4M iflag=direct oflag=direct status=none; done
  local inc="--incremental --state-dir $W/state-$m --job bench$m"
  measure setup_$m $inc --snapshot vg0/src /dev/vg0/dst_a
  # 1% in 64 KiB pieces: one every ~6.2 MiB at a varying offset (164 pieces per GiB)
  local pieces=$((m * 16 / 100)) i
  for i in $(seq 0 $((pieces - 1))); do q dd if=/dev/urandom of=/dev/vg0/src bs=64k seek=$((i * 99 + (i * 37) % 50)) count=1 oflag=direct conv=notrunc status=none; done
  R change_$m bytes $((pieces * 65536))
  measure incremental_$m $inc --snapshot vg0/src /dev/vg0/dst_a
  measure full_$m --snapshot vg0/src --job benchfull$m /dev/vg0/dst_b
  for t in a b; do cmp -s /dev/vg0/src /dev/vg0/dst_$t && R check_$m same_$t yes || R check_$m same_$t no; done
  R size "$m" ""
  q lvremove -y vg0
}
q pvcreate -y /dev/vda; q vgcreate vg0 /dev/vda
for m in ${@:-1024 4096}; do one $m; done
