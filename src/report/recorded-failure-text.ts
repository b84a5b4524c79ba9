import type { RecordedFailureCheck } from '../explore/recorded-failure.ts';

/** What the fixed run had on, as words. */
function fixesText(check: RecordedFailureCheck): string {
  return check.withFix === 'all' ? 'every fix on' : `${check.withFix.join(', ')} on`;
}

/** The check as a few lines: where it came from, how it came back without the fixes, and how it went with them. */
export function formatRecordedFailureCheck(check: RecordedFailureCheck, source: string): string {
  const oracle = check.oracle ?? 'an invariant';
  const lines = [`${source}: ${check.scenario} seed ${check.seed}, ${check.fixesOff.join(', ')} off, ${check.choices} recorded choices`];
  if (check.reproduction === 'exact') {
    lines.push(`  without the fixes: ${oracle} breaks again, entry for entry (trace hash ${check.recorded.hash})`);
  } else {
    const parted = indent(check.divergence ?? 'the replay parted from the recording');
    lines.push(check.reproduction === 'drifted'
      ? `  without the fixes: drifted — ${parted}\n  following its choices, ${oracle} still breaks`
      : `  without the fixes: GONE — ${oracle} no longer breaks (${check.recorded.violations.length === 0 ? 'nothing breaks' : `${check.recorded.violations.map((v) => v.oracle).join(', ')} broke instead`}); this trace keeps nothing fixed now: `
        + `record the failure again (find it with run.ts or the campaign, shrink it) and replace the file${check.divergence === null ? '' : `\n  the replay parted from the recording: ${parted}`}`);
  }
  const followed = `followed ${check.choices - check.skipped} of ${check.choices} choices${check.skipped > 0 ? `, ${check.skipped} no longer possible` : ''}`;
  if (check.holds) {
    lines.push(`  with ${fixesText(check)}: no invariant breaks (${followed}); ${check.partAt === null ? 'the runs do not part' : `the runs part at ${indent(check.partAt)}`}`);
  } else {
    const [first] = check.fixed.violations;
    lines.push(`  with ${fixesText(check)}: REGRESSION — ${first.oracle} breaks (${followed}): ${first.detail.split('\n')[0]}`);
  }
  return lines.join('\n');
}

const indent = (text: string): string => text.replaceAll('\n', '\n    ');
