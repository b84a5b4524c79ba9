/**
 * Goal: the reply table says how an allowed exit's instruction runs again: EPT ignored for every
 * exit, and, for an instruction that exited on its own control (MOV CR, WRMSR, XSETBV, descriptor
 * tables), without that exit either — otherwise "allowed" would exit again forever. Skipping
 * replies move RIP past the instruction and carry nothing into the next entry. Method: applyReply
 * on a vCPU's state for each exit reason.
 */
import test from 'ava';
import { applyReply } from '../../actors/exit-replies.ts';
import { CommandFlag, ExitReason, type ExitReasonCode } from '../../src/machine/layout.ts';
import { Machine } from '../../src/machine/machine.ts';

const RIP = 0x1000n;
const CARRIED_OUT = [ExitReason.crWrite, ExitReason.msrWrite, ExitReason.xcrWrite, ExitReason.dtr];
const RE_RUN = [ExitReason.eptViolation, ExitReason.int3, ExitReason.vmcall, ExitReason.hlt, ExitReason.exception];

function reply(reason: ExitReasonCode, action: 'allowed' | 'notAllowed'): { readonly flags: number | null; readonly rip: bigint } {
  const state = Machine.create({ ramBytes: 1 << 20, vcpus: 1 }).vcpu(0);
  state.rip = RIP;
  const flags = applyReply(state, { action }, { reason, rip: RIP, instructionLength: 3 });
  return { flags, rip: state.rip };
}

test('allowed: instructions that exited on their own control are carried out without exiting again', (t) => {
  for (const reason of CARRIED_OUT) {
    t.is(reply(reason, 'allowed').flags, CommandFlag.entry | CommandFlag.emulateFirst | CommandFlag.firstWithoutExits, `exit reason ${reason}`);
  }
});

test('allowed: other exits re-run the instruction with EPT ignored and their exits kept', (t) => {
  for (const reason of RE_RUN) t.is(reply(reason, 'allowed').flags, CommandFlag.entry | CommandFlag.emulateFirst, `exit reason ${reason}`);
});

test('notAllowed skips the instruction for every exit reason and emulates nothing', (t) => {
  for (const reason of [...CARRIED_OUT, ...RE_RUN]) t.deepEqual(reply(reason, 'notAllowed'), { flags: CommandFlag.entry, rip: RIP + 3n }, `exit reason ${reason}`);
});
