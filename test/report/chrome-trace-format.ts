/**
 * The rules of Chrome's Trace Event Format (JSON Object Format) that a viewer relies on, checked
 * on parsed JSON: every problem as one line (an empty list: the trace is well formed).
 *
 * - The object has `traceEvents` (an array), `displayTimeUnit` ('ms' or 'ns') and `metadata`.
 * - Every event has `ph`, `pid`, `tid`, `ts` (numbers ≥ 0) and a non-empty `name`.
 * - 'X' events have `dur` ≥ 0, and those of one thread nest (Perfetto drops one that crosses).
 * - 'B' and 'E' pair up per thread, in order.
 * - 'i' / 'I' have scope 'g', 'p' or 't' when they give one.
 * - Flow events: every 's' id is ended by exactly one 'f' with that id, name and category, not
 *   before it; an 's' lies inside an 'X' of its thread, and so does an 'f' that binds to its
 *   enclosing slice (`bp: 'e'`).
 * - 'M' events name the process or a thread, with their value in `args`.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Event = { [key: string]: Json };

const PHASES = new Set(['B', 'E', 'X', 'i', 'I', 'C', 'b', 'n', 'e', 's', 't', 'f', 'P', 'O', 'N', 'D', 'M', 'V', 'v', 'R', 'c']);
const METADATA = new Set(['process_name', 'process_labels', 'process_sort_index', 'thread_name', 'thread_sort_index']);

const isObject = (value: Json | undefined): value is { [key: string]: Json } => value !== null && typeof value === 'object' && !Array.isArray(value);
const isCount = (value: Json | undefined): value is number => typeof value === 'number' && Number.isFinite(value) && value >= 0;

interface Span {
  readonly start: number;
  readonly end: number;
}

export function chromeTraceProblems(trace: Json): string[] {
  const problems: string[] = [];
  if (!isObject(trace)) return ['the trace is not a JSON object'];
  if (!Array.isArray(trace.traceEvents)) return ['traceEvents is not an array'];
  if (trace.displayTimeUnit !== 'ms' && trace.displayTimeUnit !== 'ns') problems.push(`displayTimeUnit is ${JSON.stringify(trace.displayTimeUnit)}, not "ms" or "ns"`);
  if (!isObject(trace.metadata)) problems.push('metadata is not an object');
  const complete = new Map<string, Span[]>();
  const open = new Map<string, string[]>();
  const starts = new Map<string, Event>();
  const ends = new Map<string, Event[]>();
  trace.traceEvents.forEach((raw, index) => {
    const at = `event #${index}`;
    if (!isObject(raw)) {
      problems.push(`${at} is not an object`);
      return;
    }
    const event: Event = raw;
    const ph = event.ph;
    if (typeof ph !== 'string' || !PHASES.has(ph)) problems.push(`${at}: ph ${JSON.stringify(ph)} is not a phase`);
    for (const key of ['pid', 'tid', 'ts'] as const) if (!isCount(event[key])) problems.push(`${at}: ${key} ${JSON.stringify(event[key])} is not a number ≥ 0`);
    if (typeof event.name !== 'string' || event.name === '') problems.push(`${at}: no name`);
    const thread = `${String(event.pid)}/${String(event.tid)}`;
    const ts = Number(event.ts);
    if (ph === 'X') {
      if (!isCount(event.dur)) problems.push(`${at}: X event with dur ${JSON.stringify(event.dur)}`);
      else complete.set(thread, [...(complete.get(thread) ?? []), { start: ts, end: ts + event.dur }]);
    }
    if (ph === 'B') open.set(thread, [...(open.get(thread) ?? []), String(event.name)]);
    if (ph === 'E' && (open.get(thread) ?? []).pop() === undefined) problems.push(`${at}: E without a B on thread ${thread}`);
    if ((ph === 'i' || ph === 'I') && event.s !== undefined && !['g', 'p', 't'].includes(String(event.s))) problems.push(`${at}: instant scope ${JSON.stringify(event.s)}`);
    if (ph === 's' || ph === 'f') {
      if (event.id === undefined) problems.push(`${at}: flow event without an id`);
      const key = `${String(event.id)}`;
      if (ph === 's') {
        if (starts.has(key)) problems.push(`${at}: flow id ${key} starts twice`);
        starts.set(key, event);
      } else ends.set(key, [...(ends.get(key) ?? []), event]);
    }
    if (ph === 'M') {
      if (!METADATA.has(String(event.name))) problems.push(`${at}: metadata event ${String(event.name)}`);
      if (!isObject(event.args)) problems.push(`${at}: metadata event without args`);
    }
  });
  for (const [thread, names] of open) if (names.length > 0) problems.push(`thread ${thread}: B without E: ${names.join(', ')}`);
  for (const [thread, spans] of complete) problems.push(...nestingProblems(thread, spans));
  const enclosed = (event: Event): boolean => (complete.get(`${String(event.pid)}/${String(event.tid)}`) ?? []).some((span) => span.start <= Number(event.ts) && Number(event.ts) <= span.end);
  for (const [id, start] of starts) {
    const finish = ends.get(id) ?? [];
    if (finish.length !== 1) {
      problems.push(`flow ${id} has ${finish.length} end(s)`);
      continue;
    }
    const [end] = finish;
    if (end.name !== start.name || end.cat !== start.cat) problems.push(`flow ${id}: start and end differ in name or category`);
    if (Number(end.ts) < Number(start.ts)) problems.push(`flow ${id} ends before it starts`);
    if (!enclosed(start)) problems.push(`flow ${id} (${String(start.name)}) starts outside any slice of its thread`);
    if (end.bp === 'e' && !enclosed(end)) problems.push(`flow ${id} (${String(end.name)}) ends outside any slice of its thread`);
  }
  for (const id of ends.keys()) if (!starts.has(id)) problems.push(`flow ${id} ends without a start`);
  return problems;
}

/** Complete events of one thread that cross each other instead of nesting. */
function nestingProblems(thread: string, spans: readonly Span[]): string[] {
  const sorted = [...spans].sort((a, b) => a.start - b.start || b.end - a.end);
  const stack: Span[] = [];
  const problems: string[] = [];
  for (const span of sorted) {
    while (stack.length > 0 && stack[stack.length - 1].end <= span.start) stack.pop();
    const parent = stack[stack.length - 1];
    if (parent !== undefined && span.end > parent.end) problems.push(`thread ${thread}: [${span.start}, ${span.end}] crosses [${parent.start}, ${parent.end}]`);
    stack.push(span);
  }
  return problems;
}
