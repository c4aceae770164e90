# History of target copies on real LVM, for test/history-vm.test.ts, run as root inside the VM by
# run-vm.sh (guest: /dev/vda is a blank disk, cwd is the checkout, dist/ is built). Prints facts
# as "R <scenario> <key> <value>" (newlines become "|"). Only the blkdelta CLI and shell run here
# (JS is ~17x slower in the VM), so every scenario keeps its blkdelta calls few.
# usage: history-scenarios.sh [SCENARIO...]   (default: thin cow pool remote)
set -u
export LVM_SUPPRESS_FD_WARNINGS=1
BD="node bin/blkdelta"
W=/tmp/bdh && mkdir -p $W/state
CFG=$W/blkdelta.toml

. test/vm/lib.sh   # R q lv digest bdk (blkdelta runs recorded under a key prefix)
thinlv() { q lvcreate -y -V "$2" -T "vg0/$3" -n "$1"; }
rnd() { q dd if=/dev/urandom of=/dev/vg0/$1 bs=1M count=$2 seek=${3:-0} oflag=direct status=none; }
# digest of a kept copy, read through a read-only activation that is undone after (if it was inactive)
copydigest() {
  local was; was=$(lvs --noheadings -o lv_active vg0/$1 | tr -d ' ')
  [ "$was" = active ] || { q lvchange -ay -K vg0/$1; q blockdev --setro /dev/vg0/$1; }
  digest $1
  [ "$was" = active ] || q lvchange -an vg0/$1
}
# the job's copies (tagged blkdelta-job:$1), oldest first
copies() { lvs --noheadings -o lv_name,lv_tags --sort lv_time vg0 | awk -v t="blkdelta-job:$1" 'index($2, t) { print $1 }'; }
ncopies() { copies $1 | grep -c . ; }
poolfill() { lvs --noheadings -o data_percent vg0/$1 | tr -d ' '; }

cat > $CFG <<TOML
state_dir = "$W/state"

[jobs.hthin]
source = "/dev/vg0/h_src"
target = "/dev/vg0/h_dst"
target_snapshot = true
keep_last = 3

[jobs.hcow]
source = "/dev/vg0/c_src"
target = "/dev/vg0/c_dst"
target_snapshot = true
target_snapshot_size = "8M"
keep = 3

[jobs.hpool]
source = "/dev/vg0/p_src"
target = "/dev/vg0/p_dst"
target_snapshot = true
keep_last = 1
pool_max_fill = 60

[jobs.hremote]
source = "/dev/vg0/rm_src"
target = "localhost:/dev/vg0/rm_dst"
target_snapshot = true

[jobs.hfull]
source = "/dev/vg0/p_src"
target = "/dev/vg0/p_dst"
target_snapshot = true
pool_max_fill = 40
TOML

thin() {   # thin target: runs, copies, restore of each point, a rollback by merge, verify of a damaged copy
  lv h_src 8M; q lvcreate -y -L 128M -T vg0/tp; thinlv h_dst 8M tp; lv h_r1 8M; lv h_r2 8M
  rnd h_src 8; R thin d1 "$(digest h_src)"; bdk thin 1 run hthin --config $CFG
  rnd h_src 2 3; R thin d2 "$(digest h_src)"; bdk thin 2 run hthin --config $CFG
  rnd h_src 2 5; R thin d3 "$(digest h_src)"; bdk thin 3 run hthin --config $CFG
  R thin copies3 "$(copies hthin)"
  bdk thin list history list hthin --json --config $CFG
  R thin record "$(cat $W/state/hthin.json)"
  local c; c=($(copies hthin))   # oldest first: the copy taken before run 2 (d1), before run 3 (d2)
  R thin c1 "${c[0]}"; R thin c2 "${c[1]}"
  bdk thin r1 history restore hthin "${c[0]}" /dev/vg0/h_r1 --config $CFG; R thin r1sha "$(digest h_r1)"
  bdk thin r2 history restore hthin "${c[1]}" /dev/vg0/h_r2 --config $CFG; R thin r2sha "$(digest h_r2)"
  R thin c1after "$(copydigest ${c[0]})"; R thin c2after "$(copydigest ${c[1]})"
  R thin active_after "$(lvs --noheadings -o lv_active vg0/${c[0]} | tr -d ' ')"
  R thin copies_after_restore "$(copies hthin)"
  # rollback: merge the d1 copy into the target (the documented way); the d2 copy loses its origin
  q lvconvert -y --merge vg0/${c[0]}
  R thin rolled "$(digest h_dst)"
  R thin orphan_origin "$(lvs --noheadings -o origin vg0/${c[1]} | tr -d ' ')"
  rnd h_src 2 1; R thin d4 "$(digest h_src)"; bdk thin 4 run hthin --config $CFG
  rnd h_src 2 6; R thin d5 "$(digest h_src)"; bdk thin 5 run hthin --config $CFG
  R thin copies5 "$(copies hthin)"
  R thin live_same "$([ "$(digest h_src)" = "$(digest h_dst)" ] && echo yes || echo no)"
  bdk thin v1 history verify hthin --config $CFG
  c=($(copies hthin)); R thin damaged "${c[1]}"
  q lvchange -ay -K vg0/${c[1]}; q dd if=/dev/urandom of=/dev/vg0/${c[1]} bs=4k count=1 seek=100 oflag=direct status=none; q lvchange -an vg0/${c[1]}
  bdk thin v2 history verify hthin --config $CFG
  bdk thin check check hthin --config $CFG
}

cow() {   # COW target (not thin): copies are COW snapshots; a listed point restores to its run's data
  lv c_src 8M; lv c_dst 8M; lv c_r 8M
  rnd c_src 8; bdk cow 1 run hcow --config $CFG
  rnd c_src 2 2; R cow d2 "$(digest c_src)"; bdk cow 2 run hcow --config $CFG
  rnd c_src 2 4; bdk cow 3 run hcow --config $CFG
  R cow copies "$(copies hcow)"
  bdk cow list history list hcow --json --config $CFG
  local c; c=($(copies hcow)); R cow newest "${c[-1]}"
  bdk cow r history restore hcow "${c[-1]}" /dev/vg0/c_r --config $CFG; R cow rsha "$(digest c_r)"; R cow after "$(digest ${c[-1]})"
}

pool() {   # pool_max_fill: extra copies kept as space allows, pruned while over; a full pool refused
  lv p_src 16M; q lvcreate -y -L 48M -T vg0/pp; thinlv p_dst 16M pp
  rnd p_src 16; bdk pool 1 run hpool --config $CFG; R pool fill1 "$(poolfill pp)"
  rnd p_src 8; bdk pool 2 run hpool --config $CFG; R pool fill2 "$(poolfill pp)"; R pool copies2 "$(copies hpool)"
  rnd p_src 8 8; bdk pool 3 run hpool --config $CFG; R pool fill3 "$(poolfill pp)"; R pool copies3 "$(copies hpool)"
  bdk pool dry history prune hpool --dry-run --config $CFG
  local before; before=$(digest p_dst); rnd p_src 1
  bdk pool full run hfull --config $CFG
  R pool full_same "$([ "$before" = "$(digest p_dst)" ] && echo yes || echo no)"; R pool full_copies "$(ncopies hfull)"
}

remote() {   # a remote target: its copies are made, listed, verified, restored and pruned by its server's policy
             # (the VM has no sshd: --rsh runs `blkdelta server --config FILE` here; the client only asks)
  lv rm_src 8M; q lvcreate -y -L 64M -T vg0/rtp; thinlv rm_dst 8M rtp; lv rm_r2 8M; lv rm_other 8M
  q dd if=/dev/zero of=$W/rm_r1.img bs=1M count=8 status=none
  local allow='allow = ["/dev/vg0/rm_*"]' ts='[server.target_snapshot]'
  printf '[server]\n%s\n%s\nkeep_last = 3\n' "$allow" "$ts" > $W/rs.toml
  printf '[server]\n%s\nread_only = true\n%s\nkeep_last = 3\n' "$allow" "$ts" > $W/rs_ro.toml
  printf '[server]\nallow = ["/dev/vg0/rm_src"]\n%s\nkeep_last = 3\n' "$ts" > $W/rs_narrow.toml
  printf '[server]\n%s\n%s\nkeep_last = 2\npool_max_fill = 1\n' "$allow" "$ts" > $W/rs_two.toml
  rsh() { printf '%s' "sh -c 'shift 2; exec sh -c \"\$1 --config $W/$1.toml\"' rsh"; }
  local via=(--config $CFG --rsh "$(rsh rs)" --remote-cmd "$BD")
  rnd rm_src 8; R remote d1 "$(digest rm_src)"
  bdk remote 1 sync --no-progress --rsh "$(rsh rs)" --remote-cmd "$BD" --target-snapshot --job hremote /dev/vg0/rm_src localhost:/dev/vg0/rm_dst
  rnd rm_src 2 3; R remote d2 "$(digest rm_src)"
  bdk remote 2 sync --no-progress --rsh "$(rsh rs)" --remote-cmd "$BD" --target-snapshot --job hremote /dev/vg0/rm_src localhost:/dev/vg0/rm_dst
  rnd rm_src 2 5; R remote d3 "$(digest rm_src)"
  bdk remote 3 sync --no-progress --rsh "$(rsh rs)" --remote-cmd "$BD" --target-snapshot --job hremote /dev/vg0/rm_src localhost:/dev/vg0/rm_dst
  R remote copies3 "$(copies hremote)"
  bdk remote list history list hremote --json "${via[@]}"
  bdk remote listt history list hremote "${via[@]}"
  local c; c=($(copies hremote))   # oldest first; the newest two were taken before run 2 (d1) and run 3 (d2)
  local c1=${c[-2]} c2=${c[-1]}; R remote c1 "$c1"; R remote c2 "$c2"
  bdk remote r1 history restore hremote "$c1" $W/rm_r1.img "${via[@]}"; R remote r1sha "$(xxhsum -H1 < $W/rm_r1.img | cut -d' ' -f1)"
  bdk remote r2 history restore hremote "$c2" localhost:/dev/vg0/rm_r2 "${via[@]}"; R remote r2sha "$(digest rm_r2)"
  R remote c1after "$(copydigest $c1)"; R remote c2after "$(copydigest $c2)"
  R remote active_after "$(lvs --noheadings -o lv_active vg0/$c1 | tr -d ' ')"
  R remote copies_after_restore "$(copies hremote)"
  bdk remote v1 history verify hremote "${via[@]}"
  q lvchange -ay -K vg0/$c2; q dd if=/dev/urandom of=/dev/vg0/$c2 bs=4k count=1 seek=100 oflag=direct status=none; q lvchange -an vg0/$c2
  bdk remote v2 history verify hremote "${via[@]}"
  R remote record "$(cat $W/state/hremote.history.json)"   # on the client: what `check` reads
  # refusals: the server's policy holds whatever the client asks
  bdk remote ro history prune hremote --config $CFG --rsh "$(rsh rs_ro)" --remote-cmd "$BD"
  bdk remote narrow history list hremote --config $CFG --rsh "$(rsh rs_narrow)" --remote-cmd "$BD"
  bdk remote nocopy history restore hremote rm_dst-nosuch $W/rm_r1.img "${via[@]}"
  bdk remote oddid history verify hremote 'x/../../etc' "${via[@]}"
  bdk remote outside history restore hremote "$c1" localhost:/dev/vg0/h_none "${via[@]}"
  R remote copies_after_refusals "$(copies hremote)"
  # prune applies the server's retention: the dry run shows it (keep_last 3, and the default pool_max_fill 90 keeps
  # the rest as space allows), then keep_last 2 with pool_max_fill 1 leaves the live target and one copy
  bdk remote dry history prune hremote --dry-run "${via[@]}"
  bdk remote prune history prune hremote --config $CFG --rsh "$(rsh rs_two)" --remote-cmd "$BD"
  R remote copies_after_prune "$(copies hremote)"
}

q pvcreate -y /dev/vda; q vgcreate vg0 /dev/vda
for s in ${@:-thin cow pool remote}; do
  t0=$(cut -d' ' -f1 /proc/uptime)
  $s
  R $s seconds "$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')"
done
