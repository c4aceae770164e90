#!/bin/bash
# run-vm.sh - blkdelta's LVM test lane: run a shell script as root inside a throwaway QEMU VM with
# a stock Debian kernel (dm-snapshot, dm-thin-pool: this machine's kernel has no device-mapper)
# and this machine's own userland (lvm2, node, this checkout), so tests drive real LVM.
#
#   guest /        = this machine's /  (9p, exported READ-ONLY) + tmpfs overlay
#                    (guest writes land in RAM and vanish at poweroff)
#   guest /dev/vdX = fresh sparse disk images, one per entry in VM_DISKS
#   guest cwd      = the caller's cwd, guest PATH = the caller's PATH; DM_DISABLE_UDEV=1 (no udevd)
#
# The kernel + initramfs are built once (apt-get download of the Debian kernel package, a
# busybox-static initramfs) and cached. Nothing is installed here: missing tools make it exit
# 125 naming the apt-get install line (.ci/run installs them).
# Nested "kvm_pvm" KVM cannot run a stock kernel, so the VM uses TCG: ~4 s to boot here, and
# JS runs ~17x slower than on the host: run only small entry points and shell inside.
#
# usage: run-vm.sh SCRIPT [ARGS...]      (SCRIPT "-" reads the script from stdin)
#        run-vm.sh --setup               (only check tools / build the cached kernel)
# exit:  the script's exit status; 124 = VM timeout (stderr: the guest's stall report, asked for
#        40 s before: each process's kernel stack, dmsetup info); 125 = VM/infra failure or missing tools
# env:   VM_CACHE   kernel+initramfs cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/blkdelta-vm)
#        VM_DISKS   space separated sizes or existing image files (default "1G")
#        VM_MEM     guest MiB (default 2048)   VM_CPUS  vCPUs (default 1; 2 is slower under TCG)
#        VM_ACCEL   auto|kvm|tcg (auto: kvm only if kvm_intel/kvm_amd is loaded)
#        VM_TIMEOUT seconds (default 600)      VM_KEEP=1 keep the run dir (console.log)
# stderr: "run-vm: guest ready after N s" (boot time, guest clock) and the script's stderr.
set -euo pipefail

CACHE=$(realpath -m "${VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/blkdelta-vm}")
log() { echo "run-vm: $*" >&2; }

setup() {
  local pkgs=() p kv off m
  command -v qemu-system-x86_64 >/dev/null || pkgs+=(qemu-system-x86)
  dpkg -s busybox-static >/dev/null 2>&1 || pkgs+=(busybox-static) # static: goes into the initramfs
  command -v xz >/dev/null || pkgs+=(xz-utils)
  command -v lvm >/dev/null || pkgs+=(lvm2)
  command -v thin_check >/dev/null || pkgs+=(thin-provisioning-tools) # lvm runs it for thin pools
  if [ ${#pkgs[@]} -gt 0 ]; then
    log "missing ${pkgs[*]}: apt-get install qemu-system-x86 busybox-static xz-utils lvm2 thin-provisioning-tools"
    exit 125
  fi
  [ -s "$CACHE/initrd.gz" ] && return 0

  log "building guest kernel + initramfs in $CACHE"
  rm -rf "$CACHE.tmp" && mkdir -p "$CACHE.tmp/deb" && cd "$CACHE.tmp"
  kdep() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ && !n++ {print $2}'; }
  p=$(kdep); [ -n "$p" ] || { apt-get update -qq; p=$(kdep); }
  [ -n "$p" ] || { log "no linux-image package known to apt: run apt-get update"; exit 125; }
  (cd deb && apt-get download -q -o APT::Sandbox::User=root "$p" >/dev/null) || { log "apt-get download $p failed"; exit 125; }
  dpkg -x deb/*.deb kernel
  kv=$(ls kernel/lib/modules)
  busybox depmod -b "$PWD/kernel" "$kv"
  # boot the uncompressed ELF (PVH entry): saves ~5 s of real-mode + xz decompression under TCG
  off=$(LC_ALL=C grep -m1 -obUaP '\xfd7zXZ\x00' "kernel/boot/vmlinuz-$kv" | cut -d: -f1)
  tail -c +$((off + 1)) "kernel/boot/vmlinuz-$kv" | xz -dc --single-stream > vmlinux || true
  [ "$(head -c4 vmlinux | tr -d '\0')" = $'\x7fELF' ] || cp "kernel/boot/vmlinuz-$kv" vmlinux

  mkdir -p ir/bin ir/proc ir/sys ir/dev ir/lower ir/rw ir/newroot
  cp /bin/busybox ir/bin/busybox
  # initramfs: only the modules needed to mount the root; the guest gets the full tree later
  for m in $(cut -d: -f1 "kernel/lib/modules/$kv/modules.dep" | grep -E '^kernel/(drivers/virtio/|drivers/block/virtio_blk|drivers/char/hw_random/virtio-rng|net/9p/9pnet(_virtio)?\.ko|fs/9p/|fs/netfs/|fs/fscache/|fs/overlayfs/)'); do
    mkdir -p "ir/lib/modules/$kv/${m%/*}" && cp "kernel/lib/modules/$kv/$m" "ir/lib/modules/$kv/$m"
  done
  cp "kernel/lib/modules/$kv/modules.dep" "ir/lib/modules/$kv/"
  cat > ir/init <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "vm-init: $*"; poweroff -f; }
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in virtio_pci virtio_blk virtio-rng 9pnet_virtio 9p overlay; do modprobe $m; done
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /lower || fail "9p root"
mount -t tmpfs -o size=75% tmpfs /rw && mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail overlay
for d in proc sys dev; do mount --move /$d /newroot/$d; done
mount -t tmpfs -o mode=755 tmpfs /newroot/run    # never the host's /run (udev, lvm locks...)
mkdir -p /newroot/dev/pts /newroot/dev/shm /newroot/run/lock /newroot/run/lvm /newroot/run/vm/io
mount -t devpts devpts /newroot/dev/pts; mount -t tmpfs tmpfs /newroot/dev/shm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 vmio /newroot/run/vm/io || fail "9p io"
for d in /etc/lvm/archive /etc/lvm/backup; do [ -d /newroot$d ] && mount -t tmpfs tmpfs /newroot$d; done
KV=$(uname -r); KD=$(cat /newroot/run/vm/io/kernel-dir)
mkdir -p /newroot/usr/lib/modules/$KV
mount --bind /lower$KD/lib/modules/$KV /newroot/usr/lib/modules/$KV
cp /bin/busybox /newroot/run/vm/busybox
ln -sf /run/vm/busybox /newroot/sbin/modprobe     # for lvm and the kernel (host may lack kmod)
exec switch_root /newroot /run/vm/busybox sh /run/vm/io/stage2
EOF
  chmod +x ir/init
  (cd ir && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > initrd.gz
  mkdir -p "$CACHE" && mv kernel vmlinux initrd.gz "$CACHE"/ && rm -rf "$CACHE.tmp"
}

[ $# -ge 1 ] || { sed -n '2,18p' "$0" >&2; exit 2; }
mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock"; flock 9; (setup); flock -u 9
[ "$1" = --setup ] && exit 0

RUN=$(mktemp -d "$(dirname "$CACHE")/run.XXXXXX")
trap '[ -n "${asker:-}" ] && { kill $asker 2>/dev/null || true; }; [ -n "${VM_KEEP:-}" ] && log "kept $RUN" || rm -rf "$RUN"' EXIT
mkdir "$RUN/io"
if [ "$1" = - ]; then cat > "$RUN/io/script"; else cp "$1" "$RUN/io/script"; fi
shift
echo "$CACHE/kernel" > "$RUN/io/kernel-dir"
{ printf 'export PATH=%q HOME=/root TERM=dumb\n' "$PATH:/usr/sbin:/sbin"
  printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
  printf 'set -- '; [ $# -gt 0 ] && printf '%q ' "$@"; echo
} > "$RUN/io/env"
cat > "$RUN/io/stage2" <<'EOF'
# pid 1 in the guest
/run/vm/busybox hostname lvmvm
/run/vm/busybox modprobe -a dm-mod dm-snapshot dm-thin-pool
# no udevd in the guest: let libdm/lvm create /dev/mapper nodes and /dev/VG/LV links itself
export DM_DISABLE_UDEV=1
# like systemd's lvm2-lvmpolld.socket (else lvconvert --merge warns that lvmpolld is missing)
[ -x /usr/sbin/lvmpolld ] && /usr/sbin/lvmpolld
. /run/vm/io/env
sh=/bin/sh; [ -x /bin/bash ] && sh=/bin/bash
cut -d' ' -f1 /proc/uptime > /run/vm/io/boot-time
# Lost virtio-blk completions: a few CI runs under TCG hung with the disk's requests "in flight"
# in the guest (/sys/block/vda/inflight > 0), qemu idle with no I/O pending, every reader of the
# disk waiting, no dm device suspended. When a disk has requests in flight and has completed none
# for 60 s, one fresh O_DIRECT read of it makes the driver and qemu look at the queue again.
# Harmless when the disk is only slow; each one is logged (io/disk-kicks) and shown by the host.
( while :; do
    for b in /sys/block/vd*; do
      d=${b##*/}; read r w < $b/inflight; set -- $(cat $b/stat)
      eval "last=\${done_$d:-}; still=\${still_$d:-0}"
      if [ $((r + w)) -gt 0 ] && [ "$1 $5" = "$last" ]; then still=$((still + 5)); else still=0; fi
      if [ $still -ge 60 ]; then
        echo "run-vm: $d: $r reads and $w writes in flight, none completed for $still s (guest uptime $(cut -d' ' -f1 /proc/uptime) s): one fresh read to wake its queue" >> /run/vm/io/disk-kicks
        dd if=/dev/$d of=/dev/null bs=4096 count=1 iflag=direct status=none 2>/dev/null &
        still=0
      fi
      eval "done_$d='$1 $5'; still_$d=$still"
    done
    /run/vm/busybox sleep 5
  done ) &
# stall report: when the host asks (io/dump appears shortly before its timeout), write what every
# process waits on, the device-mapper state (a suspended device hangs its readers in a killable
# wait, which the hung-task detector does not report) and the kernel's blocked-task dump
( while [ ! -e /run/vm/io/dump ]; do /run/vm/busybox sleep 2; done
  { echo "== ps"; /run/vm/busybox ps | grep -v ' \[.*\]$'
    for p in /proc/[0-9]*; do
      case "$(cut -d' ' -f3 $p/stat 2>/dev/null)" in D|S) ;; *) continue ;; esac
      grep -qE '^(sh|bash|node|sha256sum|xxhsum|dd|cmp|lv|vg|dmsetup|blkdelta)' $p/comm 2>/dev/null || continue
      echo "== ${p#/proc/} $(cat $p/comm) $(tr '\0' ' ' < $p/cmdline | cut -c1-200)"; cat $p/stack 2>/dev/null
    done
    # every task in D state, kernel threads too (a dm-thin worker waiting on its disk)
    for p in /proc/[0-9]*; do
      [ "$(cut -d' ' -f3 $p/stat 2>/dev/null)" = D ] || continue
      echo "== D ${p#/proc/} $(cat $p/comm)"; cat $p/stack 2>/dev/null
    done
    # I/O handed to each block device and not yet completed: "reads writes" (vda: the virtual disk)
    echo "== inflight"; for b in /sys/block/*; do echo "${b##*/} $(cat $b/inflight) $(cat $b/dm/name 2>/dev/null)"; done
    echo "== disk kicks"; cat /run/vm/io/disk-kicks 2>/dev/null
    echo "== interrupts"; cat /proc/interrupts
    echo "== dmsetup info -c"; dmsetup info -c 2>&1
    echo "== dmsetup table"; dmsetup table 2>&1
    echo w > /proc/sysrq-trigger; echo "== dmesg"; dmesg 2>/dev/null | tail -n 150
    # a thin pool's status commits its metadata: it hangs with the pool (so last, given 5 s)
    echo "== dmsetup status"; dmsetup status > /tmp/stall-status 2>&1 & /run/vm/busybox sleep 5; cat /tmp/stall-status
    echo "== end"
  } > /run/vm/io/stall.txt 2>&1 ) &
$sh /run/vm/io/script "$@" > /run/vm/io/stdout 2> /run/vm/io/stderr < /dev/null
echo $? > /run/vm/io/rc
sync
/run/vm/busybox poweroff -f
EOF

accel=${VM_ACCEL:-auto}
if [ "$accel" = auto ]; then
  accel=tcg   # e.g. nested "kvm_pvm" hosts offer /dev/kvm but cannot run a stock kernel
  [ -w /dev/kvm ] && [ -d /sys/module/kvm_intel -o -d /sys/module/kvm_amd ] && accel=kvm
fi
cpu=max; [ "$accel" = kvm ] && cpu=host

drives=() i=0
for d in ${VM_DISKS:-1G}; do
  if [ -f "$d" ]; then f=$d; else f=$RUN/disk$i.img; truncate -s "$d" "$f"; fi
  drives+=(-drive "file=$f,if=virtio,format=raw,cache=unsafe,discard=unmap")
  i=$((i + 1))
done

TIMEOUT=${VM_TIMEOUT:-600}
# ask the guest for its stall report 40 s (a tenth of short timeouts) before the timeout
# (its sleep is killed with it, and it holds no output pipe: a caller waits for their end)
( sleep $((TIMEOUT > 400 ? TIMEOUT - 40 : TIMEOUT * 9 / 10)) & s=$!
  trap 'kill $s 2>/dev/null; exit 0' TERM; wait $s; touch "$RUN/io/dump" ) </dev/null >/dev/null 2>&1 &
asker=$!
set +e
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 \
  -machine pc,accel="$accel" -cpu "$cpu" -smp "${VM_CPUS:-1}" -m "${VM_MEM:-2048}" \
  -bios /usr/share/qemu/qboot.rom -nodefaults -no-user-config -display none -no-reboot \
  -kernel "$CACHE/vmlinux" -initrd "$CACHE/initrd.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=4" \
  -serial "file:$RUN/console.log" -device virtio-rng-pci \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$RUN/io,mount_tag=vmio,security_model=none" \
  "${drives[@]}" > "$RUN/qemu.log" 2>&1
qrc=$?
kill $asker 2>/dev/null; wait $asker 2>/dev/null
set -e
[ -s "$RUN/io/boot-time" ] && log "guest ready after $(cat "$RUN/io/boot-time") s ($accel)"
[ -f "$RUN/io/stdout" ] && cat "$RUN/io/stdout"
[ -f "$RUN/io/stderr" ] && cat "$RUN/io/stderr" >&2
[ -s "$RUN/io/disk-kicks" ] && cat "$RUN/io/disk-kicks" >&2
[ -s "$RUN/io/rc" ] && exit "$(cat "$RUN/io/rc")"
log "VM failed (qemu exit $qrc); qemu + console output:"
cat "$RUN/qemu.log" >&2; tail -n 40 "$RUN/console.log" >&2
if [ $qrc -eq 124 ]; then
  log "VM timed out after $TIMEOUT s; the guest's state shortly before:"
  if [ -s "$RUN/io/stall.txt" ]; then cat "$RUN/io/stall.txt" >&2
  else log "no stall report: the guest did not answer (frozen as a whole, or the request came too late)"; fi
  exit 124
fi
exit 125
