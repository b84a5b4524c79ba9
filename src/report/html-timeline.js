// The page script of vcpusim's HTML timeline (src/report/html.ts inlines it). It reads the run
// from #run-data and draws everything; no library, no network.
(() => {
  'use strict';
  const data = JSON.parse(document.getElementById('run-data').textContent);
  const { meta, lanes, slices, marks, exits, violations, story, points, end } = data;
  const app = document.getElementById('app');
  const exitByTicket = new Map(exits.map((exit) => [exit.ticket, exit]));
  /** The widest a track may get: browsers stop laying out elements beyond some 16 million px. */
  const MAX_WIDTH = 15e6;
  const state = { zoom: 1, axis: 'steps', selected: -1 };

  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  const clockOf = (ts) => Math.floor(ts / meta.stepUnits);
  const describeArgs = (args) => Object.entries(args).map(([key, value]) => `${key}=${value}`).join(' ');

  /** Index of the first point ≥ ts (the order of an item among all the run's items). */
  const rank = (ts) => {
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (points[mid] < ts) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  /** The part of a track the run spans: the rest, on the right, keeps what happens at its very end in view. */
  const SPAN = 0.98;
  /** Where a time falls across the track, 0..SPAN, on the step clock or in the order of events. */
  const AXES = {
    steps: (ts) => (SPAN * ts) / end,
    events: (ts) => (SPAN * (ts >= end ? points.length : rank(ts))) / Math.max(points.length, 1),
  };
  const percent = (ts) => `${(AXES[state.axis](ts) * 100).toFixed(6)}%`;
  const widthPercent = (start, stop) => `${Math.max(0, (AXES[state.axis](stop) - AXES[state.axis](start)) * 100).toFixed(6)}%`;

  // ---- header: what run this is, what broke, how to see it again -------------------------------
  const header = el('header');
  header.append(el('h1', '', `${meta.scenario} · seed ${meta.seed} · ${meta.strategy} · ${meta.mode}`));
  const facts = el('div', 'meta');
  for (const text of [
    meta.fixesOff.length > 0 ? `fixes off: ${meta.fixesOff.join(', ')}` : 'all fixes on',
    `outcome: ${meta.outcome}`,
    `${meta.steps} steps, ${meta.choices} choices`,
    `trace hash ${meta.hash}`,
    `windows reached: ${meta.windows.join(', ') || 'none'}`,
  ]) facts.append(el('span', '', text));
  header.append(facts);
  const box = el('section', violations.length > 0 ? 'violations' : 'passed');
  box.id = 'violations';
  if (violations.length > 0) {
    box.append(el('h2', '', violations.length === 1 ? 'Invariant broken' : `${violations.length} invariants broken`));
    const list = el('ol');
    violations.forEach((violation, k) => {
      const item = el('li');
      item.append(el('b', '', violation.oracle), el('span', 'hint', ` (checked ${violation.phase === 'continuous' ? 'after every handler' : violation.phase === 'after-uninit' ? 'after the unload' : 'at the end of the run'}, step ${clockOf(violation.at)}) `));
      const show = el('button', 'show-violation', 'show');
      show.dataset.violation = String(k);
      item.append(show);
      const last = lastExitBefore(violation.at);
      if (last !== null) {
        item.append(el('span', 'hint', ` last exit handled before it: `));
        const link = el('button', 'show-exit', `#${last.ticket} (vCPU ${last.vcpu}, ${last.reason})`);
        link.dataset.exit = String(last.ticket);
        item.append(link);
      }
      item.append(el('pre', '', violation.detail));
      list.append(item);
    });
    box.append(list);
  } else {
    box.append(el('b', '', 'No invariant broke in this run.'));
  }
  for (const [label, command] of [['replay', meta.replay], ['rerun', meta.rerun]]) {
    if (command === null) continue;
    const line = el('div', 'command');
    line.append(el('span', '', `${label}: `), el('code', '', command));
    box.append(line);
  }
  header.append(box);
  if (story.length > 0) {
    const told = el('section', 'story-box');
    told.id = 'story';
    told.append(el('h2', '', 'How it happens (the shrunk schedule: its preemptions and the events around them)'));
    const lines = el('ol');
    story.forEach((line, k) => {
      const item = el('li');
      const show = el('button', 'show-story', `step ${line.clock}`);
      show.dataset.story = String(k);
      item.append(show, el('span', 'mono', ` ${line.text}`));
      lines.append(item);
    });
    told.append(lines);
    header.append(told);
  }
  app.append(header);

  function lastExitBefore(at) {
    let found = null;
    for (const exit of exits) if (exit.handledAt !== null && exit.handledAt <= at && (found === null || exit.handledAt > found.handledAt)) found = exit;
    return found;
  }

  // ---- toolbar --------------------------------------------------------------------------------
  const toolbar = el('div', 'toolbar');
  const zoomOut = el('button', '', '−');
  const zoomIn = el('button', '', '+');
  const fit = el('button', '', 'fit');
  zoomOut.title = 'zoom out (or Ctrl + wheel)';
  zoomIn.title = 'zoom in (or Ctrl + wheel)';
  const axis = el('select');
  axis.id = 'axis';
  for (const [value, text] of [['steps', 'axis: step clock'], ['events', 'axis: order of events']]) {
    const option = el('option', '', text);
    option.value = value;
    axis.append(option);
  }
  const actorsLabel = el('label');
  const actorsBox = el('input');
  actorsBox.type = 'checkbox';
  actorsBox.checked = true;
  actorsLabel.append(actorsBox, document.createTextNode(' actor lanes'));
  const matterLabel = el('label');
  const matterBox = el('input');
  matterBox.type = 'checkbox';
  matterBox.id = 'only-matter';
  matterBox.checked = story.length > 0;
  matterLabel.append(matterBox, document.createTextNode(' only the events that matter'));
  if (story.length === 0) matterLabel.classList.add('hidden');
  const hover = el('span', 'hover mono', 'hover over an interval; click an exit (orange) for its instruction and registers');
  toolbar.append(zoomOut, zoomIn, fit, axis, actorsLabel, matterLabel, hover);
  app.append(toolbar);

  // ---- the lanes -------------------------------------------------------------------------------
  const scroller = el('div', 'scroller');
  scroller.id = 'timeline';
  const rows = el('div', 'rows');
  scroller.append(rows);
  app.append(scroller);
  const rulerRow = el('div', 'row ruler');
  const rulerTrack = el('div', 'track');
  rulerRow.append(el('div', 'label', 'step clock'), rulerTrack);
  rows.append(rulerRow);
  const tracks = lanes.map((lane) => {
    const row = el('div', `row ${lane.kind}`);
    row.dataset.lane = lane.id;
    const label = el('div', 'label', lane.name);
    label.title = lane.name;
    const track = el('div', 'track');
    track.style.height = `calc(var(--row) * ${lane.levels})`;
    label.style.height = track.style.height;
    row.append(label, track);
    rows.append(row);
    return track;
  });
  const sliceNodes = slices.map((slice, index) => {
    const [lane, , , depth, category, name, exit] = slice;
    const node = el('div', `s ${category}`, name);
    node.dataset.i = String(index);
    if (exit >= 0) node.dataset.exit = String(exit);
    node.style.top = `calc(var(--row) * ${depth} + 1px)`;
    tracks[lane].append(node);
    return node;
  });
  const markNodes = [];
  marks.forEach((mark, index) => {
    const [lane, , category] = mark;
    if (lane < 0) return;
    const node = el('div', `m ${category}`);
    node.dataset.m = String(index);
    tracks[lane].append(node);
    markNodes.push(node);
  });
  const vlines = [];
  violations.forEach((violation, k) => {
    for (const track of [rulerTrack, ...tracks]) {
      const line = el('div', 'vline');
      line.dataset.violation = String(k);
      line.title = `violation: ${violation.oracle}`;
      track.append(line);
      vlines.push(line);
    }
  });
  // One flag on the ruler names them all, at the first (they are found close together: after a
  // handler, at the end of the run, after the unload).
  if (violations.length > 0) {
    const first = violations.reduce((best, violation, k) => (violation.at < violations[best].at ? k : best), 0);
    const flag = el('div', 'vline vflag', `✕ ${violations.map((violation) => violation.oracle).join(', ')}`);
    flag.dataset.violation = String(first);
    rulerTrack.append(flag);
    vlines.push(flag);
  }

  const rulerLines = vlines.filter((line) => line.parentNode === rulerTrack);

  function place() {
    for (let i = 0; i < slices.length; i++) {
      const [, start, stop] = slices[i];
      const style = sliceNodes[i].style;
      style.left = percent(start);
      style.width = widthPercent(start, stop);
    }
    for (const node of markNodes) node.style.left = percent(marks[Number(node.dataset.m)][1]);
    for (const line of vlines) line.style.left = percent(violations[Number(line.dataset.violation)].at);
    drawRuler();
  }

  function trackWidth() {
    return Math.min(MAX_WIDTH, Math.max(200, (scroller.clientWidth - rulerRow.firstChild.offsetWidth) * state.zoom));
  }

  function drawRuler() {
    rulerTrack.replaceChildren(...rulerLines);
    const width = trackWidth();
    const count = Math.max(2, Math.floor(width / 110));
    for (let k = 0; k < count; k++) {
      const fraction = (k / count) * SPAN;
      const ts = state.axis === 'steps' ? (fraction / SPAN) * end : (points[Math.min(points.length - 1, Math.floor((fraction / SPAN) * points.length))] ?? 0);
      const tick = el('div', 'tick', `step ${clockOf(ts)}`);
      tick.style.left = `${(fraction * 100).toFixed(4)}%`;
      rulerTrack.prepend(tick);
    }
  }

  function resize(anchorFraction) {
    const before = scroller.scrollLeft + anchorFraction * scroller.clientWidth;
    const oldWidth = rows.offsetWidth;
    const labelWidth = rulerRow.firstChild.offsetWidth;
    rows.style.width = `${trackWidth() + labelWidth}px`;
    drawRuler();
    const ratio = rows.offsetWidth / Math.max(oldWidth, 1);
    scroller.scrollLeft = before * ratio - anchorFraction * scroller.clientWidth;
  }

  function zoomBy(factor, anchorFraction = 0.5) {
    const limit = MAX_WIDTH / Math.max(scroller.clientWidth, 1);
    state.zoom = Math.min(limit, Math.max(1, state.zoom * factor));
    resize(anchorFraction);
  }

  zoomIn.addEventListener('click', () => zoomBy(2));
  zoomOut.addEventListener('click', () => zoomBy(0.5));
  fit.addEventListener('click', () => {
    state.zoom = 1;
    resize(0);
  });
  scroller.addEventListener('wheel', (event) => {
    if (!event.ctrlKey) return;
    event.preventDefault();
    zoomBy(event.deltaY < 0 ? 1.25 : 0.8, (event.clientX - scroller.getBoundingClientRect().left) / scroller.clientWidth);
  }, { passive: false });
  axis.addEventListener('change', () => {
    state.axis = axis.value;
    place();
  });
  actorsBox.addEventListener('change', () => {
    for (const row of rows.querySelectorAll('.row.actor')) row.classList.toggle('hidden', !actorsBox.checked);
  });
  window.addEventListener('resize', () => resize(0));

  /** Around each story line, a few items either side: what "the events that matter" keeps. */
  const STORY_REACH = 4;
  const storyWindows = story.map((line) => {
    const k = rank(line.at);
    return [points[Math.max(0, k - STORY_REACH)] ?? line.at, points[Math.min(points.length - 1, k + STORY_REACH)] ?? line.at];
  });
  const matters = (start, stop) => storyWindows.some(([from, to]) => start <= to && stop >= from);
  function filterToStory() {
    const only = matterBox.checked && story.length > 0;
    sliceNodes.forEach((node, i) => node.classList.toggle('hidden', only && !matters(slices[i][1], slices[i][2])));
    for (const node of markNodes) {
      const at = marks[Number(node.dataset.m)][1];
      node.classList.toggle('hidden', only && !matters(at, at));
    }
  }
  matterBox.addEventListener('change', filterToStory);

  rows.addEventListener('mouseover', (event) => {
    const target = event.target;
    if (!(target instanceof HTMLElement)) return;
    if (target.dataset.i !== undefined) {
      const [, start, stop, , category, name, , args] = slices[Number(target.dataset.i)];
      hover.textContent = `${name} — ${category}, steps ${clockOf(start)}–${clockOf(stop)} ${describeArgs(args)}`;
    } else if (target.dataset.m !== undefined) {
      const [, at, category, name, args] = marks[Number(target.dataset.m)];
      hover.textContent = `${name} — ${category} at step ${clockOf(at)} ${describeArgs(args)}`;
    }
  });

  // ---- details of the selected exit, and the list of exits ------------------------------------
  const panels = el('div', 'panels');
  const detail = el('section', 'panel detail');
  detail.id = 'exit-detail';
  detail.append(el('h2', '', 'Exit'), el('p', 'hint', 'Click an exit on a vCPU lane (orange), its handler on the handler lane, or a row of the list.'));
  const list = el('section', 'panel');
  list.append(el('h2', '', `${exits.length} VM exits`));
  const table = el('table');
  const head = el('tr');
  for (const name of ['#', 'vCPU', 'step', 'reason', 'RIP', 'instruction', 'decision']) head.append(el('th', '', name));
  const thead = el('thead');
  thead.append(head);
  const tbody = el('tbody');
  const rowsByTicket = new Map();
  const firstViolation = violations.length > 0 ? Math.min(...violations.map((v) => v.at)) : Infinity;
  for (const exit of exits) {
    const row = el('tr', exit.at > firstViolation ? 'late' : '');
    row.dataset.exit = String(exit.ticket);
    for (const text of [exit.ticket, exit.vcpu, exit.clock, exit.reason, exit.rip, exit.code[0]?.text ?? '', exit.action === null ? 'not handled' : `${exit.action}${exit.inject !== null ? ` inject ${exit.inject}` : ''}`]) {
      row.append(el('td', typeof text === 'string' && text.startsWith('0x') ? 'mono' : '', text));
    }
    tbody.append(row);
    rowsByTicket.set(exit.ticket, row);
  }
  table.append(thead, tbody);
  const scroll = el('div', 'exits');
  scroll.append(table);
  list.append(scroll);
  panels.append(detail, list);
  app.append(panels);

  function select(ticket) {
    const exit = exitByTicket.get(ticket);
    if (exit === undefined) return;
    for (const node of rows.querySelectorAll('.s.selected')) node.classList.remove('selected');
    for (const node of rows.querySelectorAll(`[data-exit="${ticket}"]`)) node.classList.add('selected');
    rowsByTicket.get(state.selected)?.classList.remove('selected');
    rowsByTicket.get(ticket)?.classList.add('selected');
    const row = rowsByTicket.get(ticket);
    // Only the list scrolls: the page stays where the reader is.
    if (row !== undefined) scroll.scrollTop = row.offsetTop - scroll.clientHeight / 2;
    state.selected = ticket;
    detail.replaceChildren(...exitDetail(exit));
  }

  function exitDetail(exit) {
    const parts = [el('h2', '', `Exit #${exit.ticket}: ${exit.reason} on vCPU ${exit.vcpu} at step ${exit.clock}`)];
    const [first] = exit.code;
    parts.push(el('div', 'instruction mono', first === undefined ? '(no code)' : `${first.address}  ${first.text}`));
    const decision = exit.action === null ? 'never handled (the run ended first)' : `${exit.action}${exit.inject !== null ? `, injecting vector ${exit.inject}` : ''}`;
    const waited = exit.handlerAt === null ? '' : ` — waited ${clockOf(exit.handlerAt) - exit.clock} steps for the handler lock`;
    parts.push(el('p', '', `Engine's decision: ${decision}${waited}`));
    const factLine = Object.entries(exit.facts).map(([key, value]) => `${key} ${value}`).join(', ');
    if (factLine) parts.push(el('p', 'mono', factLine));
    parts.push(el('h2', '', 'Code at RIP (as the vCPU saw it at the exit)'));
    const code = el('pre', 'code');
    exit.code.forEach((line, k) => code.append(el('div', k === 0 ? 'first' : '', `${line.address}  ${line.bytes.padEnd(30)} ${line.text}`)));
    parts.push(code);
    parts.push(el('h2', '', 'Registers at the exit'));
    const registers = el('div', 'registers mono');
    for (const [name, value] of exit.registers) {
      const cell = el('div');
      cell.append(el('b', '', name), el('span', '', value));
      registers.append(cell);
    }
    if (exit.registers.length === 0) registers.append(el('span', 'hint', 'not recorded'));
    parts.push(registers);
    parts.push(el('h2', '', 'While its handler held the lock (notes, hooks, EPT changes, preemption)'));
    parts.push(el('pre', 'handler-log', exit.handler.map((line) => `${String(line.clock).padStart(7)}  ${line.text}`).join('\n') || '(nothing)'));
    return parts;
  }

  function reveal(ts) {
    const fraction = AXES[state.axis](ts);
    const labelWidth = rulerRow.firstChild.offsetWidth;
    scroller.scrollLeft = Math.max(0, labelWidth + fraction * (rows.offsetWidth - labelWidth) - scroller.clientWidth / 2);
  }

  app.addEventListener('click', (event) => {
    const target = event.target instanceof HTMLElement ? event.target.closest('[data-exit], [data-violation], [data-story]') : null;
    if (!(target instanceof HTMLElement)) return;
    if (target.dataset.story !== undefined) {
      reveal(story[Number(target.dataset.story)].at);
    } else if (target.dataset.exit !== undefined) {
      const ticket = Number(target.dataset.exit);
      select(ticket);
      if (!target.closest('.rows')) reveal(exitByTicket.get(ticket).at);
      if (target.classList.contains('show-exit')) detail.scrollIntoView({ block: 'nearest' });
    } else if (target.classList.contains('show-violation')) {
      const k = Number(target.dataset.violation);
      reveal(violations[k].at);
      for (const line of vlines) if (line.dataset.violation === String(k) && !line.classList.contains('vflag')) line.classList.add('flash');
    }
  });

  resize(0);
  place();
  filterToStory();
})();
