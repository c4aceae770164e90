// Where blkdelta keeps its state when neither a config's state_dir nor --state-dir says: the job
// records, locks and slots, the incremental base records, the server's locks (StateDirectory= of
// the systemd unit). One place, so that every command looks in the same directory. Pure.
export const DEFAULT_STATE_DIR = '/var/lib/blkdelta';
