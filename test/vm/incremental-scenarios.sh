# Incremental runs on thin LVs (sync --incremental), for test/incremental-vm.test.ts: run as root
# inside the VM by run-vm.sh (guest: /dev/vda is a blank disk, cwd is the checkout, dist/ built).
# Facts: "R <scenario> <key> <value>" (newlines become "|").
# usage: incremental-scenarios.sh [SCENARIO...]   (default: all)
set -u
export LVM_SUPPRESS_FD_WARNINGS=1
BD="node bin/blkdelta"
W=/tmp/bd && mkdir -p $W
ST=$W/state

. test/vm/lib.sh   # R q lv fill zero digest same tagged wait_written bd make_rsh
bases() { tagged blkdelta-base; }
INC="sync --no-progress --json --incremental --state-dir $ST"
# 64 scattered 4 KiB writes (a fixed spread over the LV: one in each 4 MiB)
scatter() { for i in $(seq 0 63); do q dd if=/dev/urandom of=/dev/vg0/$1 bs=4k seek=$((i * 1024 + i * 7 % 1000)) count=1 oflag=direct conv=notrunc status=none; done; }
field() { node -e 'const s=JSON.parse(require("fs").readFileSync(0,"utf8")); const v=process.argv[1].split(".").reduce((o,k)=>o?.[k],s); console.log(typeof v==="object"?JSON.stringify(v):v)' "$1" < $W/$2.out; }

setup_thin() {   # $1 thin LV of 256 MiB filled with random data, $2 a zeroed plain LV of the same size
  q lvcreate -y -V 256M -T vg0/pool -n $1; fill $1 256
  lv $2 256M; zero $2 1
}

basic() {   # first run sets the base (full); 64 scattered writes; the incremental run reads a few MiB
  setup_thin b_src b_dst
  bd b_first $INC --snapshot vg0/b_src /dev/vg0/b_dst
  R b_first same "$(same b_src b_dst)"; R b_first bases "$(bases)"
  R b_first kind "$(field incremental.kind b_first)"; R b_first reason "$(field incremental.reason b_first)"
  scatter b_src
  bd b_incr $INC --snapshot vg0/b_src /dev/vg0/b_dst
  R b_incr same "$(same b_src b_dst)"; R b_incr bases "$(bases)"
  for k in incremental.kind incremental.base incremental.newBase incremental.changedBytes incremental.sampleBlocks incremental.sampleDiffering bytesReadSource bytesReadTarget blocksDiffering; do
    R b_incr $k "$(field $k b_incr)"
  done
  bd b_none $INC --snapshot vg0/b_src /dev/vg0/b_dst   # nothing changed: only the sample is read
  R b_none kind "$(field incremental.kind b_none)"; R b_none read "$(field bytesReadSource b_none) $(field bytesReadTarget b_none)"
  R b_none bases "$(bases)"; R b_none sources "$(tagged blkdelta-source)"
}

# $W/hold/lvcreate: run with PATH=$W/hold:$PATH, it runs the real lvcreate, and when that made a
# base (tag blkdelta-base) writes its PID to $W/base-made and holds on (sleep 600, to be killed):
# whoever ran it (a client, a server) stays between "the new base exists" and "the record names it"
# (polling lvs for a second base raced the whole rotation once lvm commands got faster)
hold_base() {
  mkdir -p $W/hold; rm -f $W/base-made
  printf '#!/bin/sh\n%s "$@" || exit $?\ncase " $* " in *" blkdelta-base "*) echo $$ > %s; exec sleep 600;; esac\n' "$(command -v lvcreate)" $W/base-made > $W/hold/lvcreate
  chmod +x $W/hold/lvcreate
}

# kill -9 of the client when $2 (a command) first succeeds, then a rerun: converges, one base
# ($3 = hold: the client's lvcreate of the new base holds on, $2 waits for it, and it is killed too)
kill_at() {
  local s=$1 cond=$2 path=$PATH
  [ "${3:-}" = hold ] && { hold_base; path=$W/hold:$PATH; }
  PATH=$path $BD $INC --bwlimit 2M --snapshot vg0/b_src /dev/vg0/b_dst > $W/$s.out 2> $W/$s.err &
  local pid=$! n=0
  local hit=no
  while :; do
    if eval "$cond"; then hit=yes; break; fi
    kill -0 $pid 2>/dev/null && [ $n -lt 2400 ] || break
    sleep 0.05; n=$((n + 1))
  done
  kill -KILL $pid; [ "${3:-}" = hold ] && kill -KILL "$(cat $W/base-made 2>/dev/null)" 2>/dev/null
  wait $pid; R $s rc $?; R $s hit $hit
  R $s bases_after_kill "$(bases)"
  bd ${s}_rerun $INC --snapshot vg0/b_src /dev/vg0/b_dst
  R $s same "$(same b_src b_dst)"; R $s bases "$(bases)"; R $s sources "$(tagged blkdelta-source)"
  R $s kind "$(field incremental.kind ${s}_rerun)"; R $s reason "$(field incremental.reason ${s}_rerun)"
  R $s metasnap "$(dmsetup status vg0-pool-tpool | awk '{ print $7 }')"
}

kill9() {   # kill -9 before the metadata query, during the copy, before the rotation
  q dd if=/dev/urandom of=/dev/vg0/b_src bs=1M seek=10 count=24 oflag=direct conv=notrunc status=none
  kill_at k_snap '[ "$(tagged blkdelta-source)" -ge 1 ]'
  q dd if=/dev/urandom of=/dev/vg0/b_src bs=1M seek=40 count=24 oflag=direct conv=notrunc status=none
  kill_at k_copy 'grep -q "\"pending\":\[\[" $ST/vg0-b_src.base.json 2>/dev/null && sleep 3'
  q dd if=/dev/urandom of=/dev/vg0/b_src bs=1M seek=70 count=4 oflag=direct conv=notrunc status=none
  kill_at k_rotate '[ -s $W/base-made ]' hold   # the new base exists, the record does not name it yet
}

behind() {   # a tenth of the target rewritten behind blkdelta's back: the sample notices, full compare repairs it
  scatter b_src
  q dd if=/dev/urandom of=/dev/vg0/b_dst bs=1M seek=100 count=26 oflag=direct conv=notrunc status=none
  bd behind $INC --snapshot vg0/b_src /dev/vg0/b_dst
  R behind same "$(same b_src b_dst)"; R behind bases "$(bases)"
  R behind kind "$(field incremental.kind behind)"; R behind reason "$(field incremental.reason behind)"
  bd behind_next $INC --snapshot vg0/b_src /dev/vg0/b_dst
  R behind next_kind "$(field incremental.kind behind_next)"
}

removed() {   # the base removed by hand: full compare, reason recorded, a new base
  q lvremove -y "vg0/$(lvs --noheadings -o lv_name,lv_tags vg0 | awk '/blkdelta-base/ { print $1 }')"
  scatter b_src
  bd removed $INC --snapshot vg0/b_src /dev/vg0/b_dst
  R removed same "$(same b_src b_dst)"; R removed bases "$(bases)"
  R removed kind "$(field incremental.kind removed)"; R removed reason "$(field incremental.reason removed)"
}

nonthin() {   # a plain LV source: a full compare through a COW snapshot, reason recorded, no base
  lv n_src 64M; fill n_src 64; lv n_dst 64M
  bd nonthin $INC --snapshot vg0/n_src /dev/vg0/n_dst
  R nonthin same "$(same n_src n_dst)"; R nonthin kind "$(field incremental.kind nonthin)"; R nonthin reason "$(field incremental.reason nonthin)"
  R nonthin bases "$(lvs --noheadings -o lv_tags vg0 | grep -c 'blkdelta-job:vg0-n_src')"
}

poolguard() {   # the base pins enough to put the pool over pool_max_fill: dropped, full compare with the reason
  q dd if=/dev/urandom of=/dev/vg0/b_src bs=1M count=200 oflag=direct conv=notrunc status=none
  R poolguard fill "$(lvs --noheadings -o data_percent vg0/pool | tr -d ' ')"
  bd poolguard $INC --pool-max-fill 60 --snapshot vg0/b_src /dev/vg0/b_dst
  R poolguard same "$(same b_src b_dst)"; R poolguard bases "$(bases)"
  R poolguard kind "$(field incremental.kind poolguard)"; R poolguard reason "$(field incremental.reason poolguard)"
  R poolguard removed "$(field incremental.removedBases poolguard)"
}

job() {   # a job with incremental = true: the record, status and check show the kind of run and why
  q lvcreate -y -V 32M -T vg0/pool -n j_src; fill j_src 32; lv j_dst 32M
  cat > $W/blkdelta.toml <<TOML
state_dir = "$W/jstate"
metrics_file = "$W/jstate/blkdelta.prom"
[jobs.thinjob]
source = "/dev/vg0/j_src"
target = "/dev/vg0/j_dst"
snapshot = true
incremental = true
full_compare_every = "7d"
TOML
  bd job_first run --config $W/blkdelta.toml thinjob
  scatter_small j_src
  bd job_incr run --config $W/blkdelta.toml thinjob
  R job same "$(same j_src j_dst)"; R job bases "$(lvs --noheadings -o lv_tags vg0 | grep blkdelta-base | grep -c 'blkdelta-job:thinjob')"
  bd job_status status --config $W/blkdelta.toml --json thinjob
  bd job_check check --config $W/blkdelta.toml thinjob
  R job text_status "$($BD status --config $W/blkdelta.toml thinjob 2>&1)"
  R job metrics "$(grep -h '^blkdelta_[a-z_]*\(incremental\|read_\)' $W/jstate/blkdelta.prom)"
}
tsnap() {   # a push with --target-snapshot and --incremental: the server snapshots the target before
            # writing, the source is incremental; a target rewritten behind blkdelta's back: the
            # sample ends the first session before any write, the full compare repairs it
            # (the VM has no sshd: --rsh runs `blkdelta server --config FILE` here)
  q lvcreate -y --type thin-pool -L 160M -n ipool vg0; q lvcreate -y --type thin-pool -L 200M -n tpool vg0
  q lvcreate -y -V 64M -T vg0/ipool -n ts_src; fill ts_src 64
  q lvcreate -y -V 64M -T vg0/tpool -n ts_dst; zero ts_dst 1
  printf '[server]\nallow = ["/dev/vg0/ts_dst"]\n[server.target_snapshot]\nkeep_last = 3\n' > $W/ts.toml
  local push=(sync --no-progress --json --incremental --state-dir $W/tstate --job tsjob --target-snapshot --snapshot vg0/ts_src
    --rsh "sh -c 'shift 2; exec sh -c \"\$1 --config $W/ts.toml\"' rsh" --remote-cmd "$BD" localhost:/dev/vg0/ts_dst)
  bd ts_first "${push[@]}"
  R ts_first same "$(same ts_src ts_dst)"; R ts_first kind "$(field incremental.kind ts_first)"
  local before; before=$(digest ts_dst)
  scatter_small ts_src
  bd ts_incr "${push[@]}"
  R ts_incr same "$(same ts_src ts_dst)"; R ts_incr kind "$(field incremental.kind ts_incr)"; R ts_incr read "$(field bytesReadTarget ts_incr)"
  R ts_incr copies "$(tagged blkdelta-target)"; R ts_incr pending "$(tagged blkdelta-pending)"
  local newest; newest=$(lvs --noheadings -O -lv_time -o lv_name,lv_tags vg0 | awk '/blkdelta-target/ { print $1; exit }')
  if [ -n "$newest" ]; then
    q lvchange -ay -K vg0/$newest; R ts_incr copy_is_before "$([ "$(digest $newest)" = "$before" ] && echo yes || echo no)"; q lvchange -an vg0/$newest
  fi
  scatter_small ts_src
  q dd if=/dev/urandom of=/dev/vg0/ts_dst bs=1M seek=20 count=7 oflag=direct conv=notrunc status=none
  bd ts_behind "${push[@]}"
  R ts_behind same "$(same ts_src ts_dst)"; R ts_behind kind "$(field incremental.kind ts_behind)"; R ts_behind reason "$(field incremental.reason ts_behind)"
  R ts_behind copies "$(tagged blkdelta-target)"; R ts_behind pending "$(tagged blkdelta-pending)"
  R ts_behind bases "$(lvs --noheadings -o lv_tags vg0 | grep blkdelta-base | grep -c 'blkdelta-job:tsjob')"
}
scatter_small() { for i in $(seq 0 7); do q dd if=/dev/urandom of=/dev/vg0/$1 bs=4k seek=$((i * 1000)) count=1 oflag=direct conv=notrunc status=none; done; }

make_rsh $W/rsh.sh   # --rsh for a VM without sshd (lib.sh)
pbases() { lvs --noheadings -o lv_tags vg0 | grep blkdelta-base | grep -c 'blkdelta-job:vg0-pl_src'; }
psources() { lvs --noheadings -o lv_name,lv_tags vg0 | grep -v blkdelta-base | grep -c 'blkdelta-job:vg0-pl_src'; }
pscatter() { for i in $(seq 0 63); do q dd if=/dev/urandom of=/dev/vg0/pl_src bs=4k seek=$((i * 512 + i * 7 % 500)) count=1 oflag=direct conv=notrunc status=none; done; }
server_gone() { for _ in $(seq 300); do kill -0 "$(cat $W/server.pid 2>/dev/null)" 2>/dev/null || return 0; sleep 0.2; done; }
pinc() { local s=$1; shift; $BD $INC --rsh $W/rsh.sh --remote-cmd "node $PWD/bin/blkdelta" "$@" --snapshot localhost:vg0/pl_src /dev/vg0/pl_dst > $W/$s.out 2> $W/$s.err; local rc=$?; R $s rc $rc; R $s out "$(cat $W/$s.out)"; R $s err "$(cat $W/$s.err)"; server_gone; }

pulled() {   # a pull through `blkdelta server` on the source host: the server keeps the base, the client the record
  q lvcreate -y --type thin-pool -L 320M -n plpool vg0
  q lvcreate -y -V 128M -T vg0/plpool -n pl_src; fill pl_src 128; lv pl_dst 128M; zero pl_dst 1
  pinc pl_first
  R pl_first same "$(same pl_src pl_dst)"; R pl_first bases "$(pbases)"; R pl_first record "$(cat $ST/vg0-pl_src.base.json)"
  R pl_first kind "$(field incremental.kind pl_first)"; R pl_first reason "$(field incremental.reason pl_first)"
  pscatter
  pinc pl_incr
  R pl_incr same "$(same pl_src pl_dst)"; R pl_incr bases "$(pbases)"; R pl_incr sources "$(psources)"
  for k in incremental.kind incremental.reason incremental.base incremental.newBase incremental.removedBases incremental.sampleBlocks incremental.sampleDiffering bytesReadSource bytesReadTarget blocksDiffering; do
    R pl_incr $k "$(field $k pl_incr)"
  done
  R pl_incr record "$(cat $ST/vg0-pl_src.base.json)"
  # kill -9 of the client during the copy (the record has pending ranges), then a rerun
  q dd if=/dev/urandom of=/dev/vg0/pl_src bs=1M seek=10 count=24 oflag=direct conv=notrunc status=none
  $BD $INC --bwlimit 2M --rsh $W/rsh.sh --remote-cmd "node $PWD/bin/blkdelta" --snapshot localhost:vg0/pl_src /dev/vg0/pl_dst > $W/pl_kill.out 2> $W/pl_kill.err &
  local pid=$! n=0 hit=no
  while kill -0 $pid 2>/dev/null && [ $n -lt 1200 ]; do
    if grep -q '"pending":\[\[' $ST/vg0-pl_src.base.json 2>/dev/null; then sleep 3; hit=yes; break; fi
    sleep 0.05; n=$((n + 1))
  done
  kill -KILL $pid; wait $pid; R pl_kill rc $?; R pl_kill hit $hit
  server_gone; R pl_kill bases_after "$(pbases)"; R pl_kill sources_after "$(psources)"
  pinc pl_rerun
  R pl_rerun same "$(same pl_src pl_dst)"; R pl_rerun bases "$(pbases)"; R pl_rerun sources "$(psources)"
  R pl_rerun kind "$(field incremental.kind pl_rerun)"; R pl_rerun reason "$(field incremental.reason pl_rerun)"
  # kill -9 of the server once it made the new base (ROTATE make), before the client recorded it:
  # its lvcreate of the base holds on (hold_base), so it never answers BASE
  q dd if=/dev/urandom of=/dev/vg0/pl_src bs=1M seek=50 count=4 oflag=direct conv=notrunc status=none
  hold_base
  PATH=$W/hold:$PATH $BD $INC --rsh $W/rsh.sh --remote-cmd "node $PWD/bin/blkdelta" --snapshot localhost:vg0/pl_src /dev/vg0/pl_dst > $W/pl_skill.out 2> $W/pl_skill.err &
  pid=$! n=0 hit=no
  while kill -0 $pid 2>/dev/null && [ $n -lt 2400 ]; do
    if [ -s $W/base-made ]; then kill -KILL "$(cat $W/server.pid)" "$(cat $W/base-made)"; hit=yes; break; fi
    sleep 0.05; n=$((n + 1))
  done
  wait $pid; R pl_skill rc $?; R pl_skill hit $hit; R pl_skill err "$(cat $W/pl_skill.err)"
  R pl_skill bases_after "$(pbases)"
  pinc pl_srerun
  R pl_srerun same "$(same pl_src pl_dst)"; R pl_srerun bases "$(pbases)"; R pl_srerun sources "$(psources)"
  R pl_srerun kind "$(field incremental.kind pl_srerun)"; R pl_srerun removed "$(field incremental.removedBases pl_srerun)"
  R pl_srerun metasnap "$(dmsetup status vg0-plpool-tpool | awk '{ print $7 }')"
  # a server whose policy has no [server.source_snapshot]: refused (12) before anything is created
  printf '[server]\nallow = ["/dev/vg0/*"]\n' > $W/nosnap.toml
  local before; before=$(lvs --noheadings -o lv_name vg0 | wc -l)
  export RSH_EXTRA="--config $W/nosnap.toml"; pinc pl_refused; unset RSH_EXTRA
  R pl_refused lvs "$before $(lvs --noheadings -o lv_name vg0 | wc -l)"; R pl_refused bases "$(pbases)"
}

q pvcreate -y /dev/vda; q vgcreate vg0 /dev/vda
q lvcreate -y --type thin-pool -L 640M -n pool vg0
for s in ${@:-basic kill9 behind removed nonthin poolguard job tsnap pulled}; do
  t0=$(cut -d' ' -f1 /proc/uptime)
  $s
  R $s seconds "$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')"
done
