/**
 * Goal: status codes keep HVMI's success rule, actions combine by priority, and fix settings are
 * parsed strictly. Method: direct checks against the values in hvmi-notes §12.
 */
import test from 'ava';
import { applyFixSettings, DEFAULT_FIXES, FIX_NAMES, fixesOff, fixesWithout } from '../../src/intro/fixes.ts';
import { IntroAction, IntStatus, combineActions, intSuccess, statusName } from '../../src/intro/status.ts';

test('INT_SUCCESS is "non-negative as int32": informational codes succeed, error codes fail', (t) => {
  t.true(intSuccess(IntStatus.success));
  t.true(intSuccess(IntStatus.notNeededHint));
  t.true(intSuccess(IntStatus.instructionPatched));
  t.true(intSuccess(IntStatus.removeHookOnRet));
  t.false(intSuccess(IntStatus.notFound), 'NOT_FOUND is an error: it makes the mem-table flush fail');
  t.false(intSuccess(IntStatus.notSupported));
  t.is(statusName(IntStatus.notFound), 'notFound (0xe1000507)');
  t.is(statusName(0x12345), '0x12345');
});

test('actions combine by maximum: allowed < allowedVirtual < allowedPatched < notAllowed < ignore < retry', (t) => {
  const order = [IntroAction.allowed, IntroAction.allowedVirtual, IntroAction.allowedPatched, IntroAction.notAllowed, IntroAction.ignore, IntroAction.retry];
  for (let i = 0; i < order.length; i++) for (let j = 0; j < order.length; j++) t.is(combineActions(order[i], order[j]), order[Math.max(i, j)]);
});

test('fixes: all on by default; name=off settings; one clear error for a bad one', (t) => {
  t.true(FIX_NAMES.every((name) => DEFAULT_FIXES[name]));
  const fixes = applyFixSettings(DEFAULT_FIXES, ['icacheFlushOnPatch=off', 'patchedGuard=false']);
  t.deepEqual(fixesOff(fixes), ['icacheFlushOnPatch', 'patchedGuard']);
  t.deepEqual(applyFixSettings(fixesWithout(['toctouRetry']), ['toctouRetry=on']), DEFAULT_FIXES);
  t.throws(() => applyFixSettings(DEFAULT_FIXES, ['icacheFlush=off']), { message: /bad fix setting "icacheFlush=off": expected name=on\|off with name one of icacheFlushOnPatch/ });
  t.throws(() => applyFixSettings(DEFAULT_FIXES, ['patchedGuard']), { message: /bad fix setting/ });
});
