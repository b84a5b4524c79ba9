/**
 * Goal: one broken run does not take the rig (or a campaign) down with it. A handler that throws —
 * here the guest makes a hypercall nobody knows — ends that run with one clear report, and the
 * next run on the same rig gets a fresh session and passes; in workers mode no worker is left
 * behind. Method: the memtable scenario with a guest whose hypercall is unknown in one run.
 */
import test from 'ava';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { NtGuest, type GuestRegisters } from '../../src/guest/nt-guest.ts';
import { failed, ScenarioRig } from '../../src/explore/scenario-rig.ts';
import type { ScenarioDefinition } from '../../src/explore/scenario.ts';
import { DEFAULT_FIXES } from '../../src/intro/fixes.ts';

class FlakyGuest extends NtGuest {
  /** When set, the next thread-completion hypercall is not recognised. */
  breakNext = false;

  override guestCall(vcpu: number, regs: GuestRegisters): 'stop' | 'continue' | null {
    if (this.breakNext) {
      this.breakNext = false;
      return null;
    }
    return super.guestCall(vcpu, regs);
  }
}

for (const mode of ['inline', 'workers'] as const) {
  test(`${mode}: a handler that throws fails its run with one report; the next run is clean`, async (t) => {
    let guest: FlakyGuest | null = null;
    const definition: ScenarioDefinition<NtGuest> = { ...memtableStaleIcache, setup: () => (guest = new FlakyGuest({ vcpus: 3, iterations: 96 })) };
    const rig = ScenarioRig.open(definition, mode);
    t.teardown(() => rig.close());
    guest!.breakNext = true;
    const broken = rig.run({ seed: 1, strategy: 'random', depth: 2, fixes: DEFAULT_FIXES });
    t.is(broken.outcome, 'error');
    t.is(broken.violations.length, 1);
    t.is(broken.violations[0].oracle, 'engine-runs');
    t.regex(broken.violations[0].detail, /VMCALL at RIP 0x[0-9a-f]+ with RAX 0x766370750001 is not a hypercall this guest or engine knows/);
    t.regex(broken.vcpus, /vCPU 0: RIP 0x/);
    const next = rig.run({ seed: 2, strategy: 'random', depth: 2, fixes: DEFAULT_FIXES });
    t.false(failed(next), next.violations.map((v) => v.detail).join('\n'));
  });
}
