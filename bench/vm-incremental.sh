# Guest side of the bench's VM section (bench/incremental-case.ts): run as root inside the VM by
# test/vm/run-vm.sh (blank /dev/vda, cwd the checkout, dist/ built). A 1 GiB thin LV of random
# data, two plain LV targets made equal to it, a base set by a first incremental run on target A;
# then 1% of the source rewritten in scattered 64 KiB pieces, and the same change synced twice:
# incremental into A, full compare into B. Facts: "R <case> <key> <value>".
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
q pvcreate -y /dev/vda; q vgcreate vg0 /dev/vda
q lvcreate -y --type thin-pool -L 1600M -n pool vg0
q lvcreate -y -V 1G -T vg0/pool -n src
q dd if=/dev/urandom of=/dev/vg0/src bs=4M count=256 oflag=direct status=none
for t in a b; do q lvcreate -y -L 1G -n dst_$t vg0; q dd if=/dev/vg0/src of=/dev/vg0/dst_$t bs=4M iflag=direct oflag=direct status=none; done
INC="--incremental --state-dir $W/state --job bench"
measure setup $INC --snapshot vg0/src /dev/vg0/dst_a
# 1% of 1 GiB in 64 KiB pieces: 164 pieces, one every ~6.2 MiB at a varying offset
for i in $(seq 0 163); do q dd if=/dev/urandom of=/dev/vg0/src bs=64k seek=$((i * 99 + (i * 37) % 50)) count=1 oflag=direct conv=notrunc status=none; done
R change bytes $((164 * 65536))
measure incremental $INC --snapshot vg0/src /dev/vg0/dst_a
measure full --snapshot vg0/src --job benchfull /dev/vg0/dst_b
for t in a b; do cmp -s /dev/vg0/src /dev/vg0/dst_$t && R check same_$t yes || R check same_$t no; done
