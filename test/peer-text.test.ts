// What a peer says is checked before it is believed or printed: the exit code of an ERROR frame
// must be one of the table's failure codes (else 9), and remote text (ERROR messages, stderr
// tails) is printed with its control characters escaped.
import test from 'ava';
import { PassThrough } from 'node:stream';
import { BlkError, EXIT_TABLE, ExitCode, peerExitCode, printable } from '../src/errors.js';
import { Conn } from '../src/proto/messages.js';
import { Msg, encodeFrameHeader } from '../src/proto/wire.js';
import { TailBuffer } from '../src/transport/remote-end.js';

const code = test.macro({
  exec: (t, sent: unknown, want: number) => t.is(peerExitCode(sent) as number, want),
  title: (_p, sent, want) => `peerExitCode ${JSON.stringify(sent)} → ${want}`,
});
for (const [c] of EXIT_TABLE.filter(([c]) => c !== ExitCode.OK)) test(code, c, c);
for (const sent of [0, 20, 42, 99, 129, 131, 255, 256, -1, 1.5, '5', null, undefined, {}, [5], 2 ** 53]) test(code, sent, ExitCode.REMOTE);

const text = test.macro({
  exec: (t, raw: string, want: string) => t.is(printable(raw), want),
  title: (_p, raw) => `printable ${JSON.stringify(raw)}`,
});
test(text, 'plain text: ENOSPC, /dev/x', 'plain text: ENOSPC, /dev/x');
test(text, 'clear\x1b[2Jscreen', 'clear\\x1b[2Jscreen');
test(text, 'ok\rblkdelta: success', 'ok\\rblkdelta: success');
test(text, 'line\nblkdelta: forged line', 'line\\nblkdelta: forged line');
test(text, 'tab\there', 'tab\\there');
test(text, 'bell\x07 del\x7f c1\x9b', 'bell\\x07 del\\x7f c1\\x9b');
test(text, 'nul\x00', 'nul\\x00');
test(text, 'ünïcödé ✓', 'ünïcödé ✓');

function errorFrame(body: string): Buffer {
  const p = Buffer.from(body);
  return Buffer.concat([encodeFrameHeader(Msg.ERROR, p.length), p]);
}

const peer = test.macro({
  async exec(t, body: string, wantCode: number, wantMessage: string) {
    const input = new PassThrough();
    input.end(errorFrame(body));
    const conn = new Conn({ input, output: new PassThrough(), stderrTail: () => '', close: async () => null }, 'backup@store2');
    const err = await t.throwsAsync(conn.expect(Msg.WELCOME), { instanceOf: BlkError });
    t.is(err!.code as number, wantCode);
    t.is(err!.message, wantMessage);
  },
  title: (_p, body: string) => `an ERROR frame ${body.slice(0, 60)}`,
});
test(peer, '{"code":5,"message":"target refused"}', 5, 'backup@store2: target refused');
test(peer, '{"code":200,"message":"x"}', 9, 'backup@store2: x');
test(peer, '{"code":0,"message":"x"}', 9, 'backup@store2: x');
test(peer, '{"code":"12","message":"x"}', 9, 'backup@store2: x');
test(peer, '{"code":130,"message":"interrupted"}', 130, 'backup@store2: interrupted');
test(peer, '{"code":8,"message":"EIO\\u001b]0;pwned\\u0007\\nblkdelta: done"}', 8, 'backup@store2: EIO\\x1b]0;pwned\\x07\\nblkdelta: done');
test(peer, 'null', 9, 'backup@store2: sent a malformed ERROR');
test(peer, '{"code":5}', 5, 'backup@store2: sent a malformed ERROR');
test(peer, '[]', 9, 'backup@store2: sent a malformed ERROR');

test('a closed connection shows the stderr tail without control characters', (t) => {
  const conn = new Conn({ input: new PassThrough(), output: new PassThrough(), stderrTail: () => 'bash: \x1b[31mblkdelta\x1b[0m: not found\r\n', close: async () => null }, 'h');
  t.is(conn.closed('before WELCOME').message, 'h closed the connection before WELCOME; its stderr: bash: \\x1b[31mblkdelta\\x1b[0m: not found');
  const tail = new TailBuffer();
  tail.add(Buffer.from('ssh: \x1b[2Jgone\n'));
  t.is(tail.text(), 'ssh: \\x1b[2Jgone');
});
