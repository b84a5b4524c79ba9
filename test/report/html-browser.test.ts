/**
 * Goal: the HTML timeline of a failing run of every catalogue scenario works in a real browser:
 * it loads without console errors or requests, the vCPU and handler lanes and the violation are
 * visible, and clicking an exit (on its lane, and through the violation's "last exit" link) shows
 * that exit's instruction disassembled and its registers. A screenshot of each page is written to
 * test-output/html-timeline-<scenario>.png for a person to look at.
 * Method: Debian's chromium (/usr/bin/chromium), headless, driven by playwright-core (no browser
 * download); skipped — saying why — where that binary is missing (.ci/run installs it).
 */
import test from 'ava';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { htmlTimelineData } from '../../src/report/html.ts';
import { writeReports } from '../../src/report/run-reports.ts';
import { buildTimeline } from '../../src/report/timeline.ts';
import type { ExitDetail } from '../../src/report/timeline-model.ts';
import { firstFailingRun, SCENARIOS, SEED_BUDGET } from './failing-runs.ts';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { failed, ScenarioRig } from '../../src/explore/scenario-rig.ts';
import { describeShrink, shrinkFailingRun } from '../../src/explore/shrink-run.ts';

const CHROMIUM = '/usr/bin/chromium';
const OUTPUT = new URL('../../test-output/', import.meta.url).pathname;
/** Why the browser cannot be used here, decided before any test is declared. */
const unavailable = existsSync(CHROMIUM) ? null : `no Chromium at ${CHROMIUM} — install Debian's chromium package (.ci/run does so with apt-get when it can)`;

let browser: Browser | null = null;
test.before(async () => {
  if (unavailable !== null) return;
  mkdirSync(OUTPUT, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});
test.after.always(async () => {
  await browser?.close();
});

if (unavailable !== null) {
  test('the browser tests are skipped', (t) => {
    t.log(`skipped: ${unavailable}`);
    t.pass();
  });
}

/** The little of the DOM the page function below uses (this project compiles without the DOM library). */
interface PageElement {
  scrollIntoView(options: { block: string; inline: string }): void;
  getBoundingClientRect(): { left: number; top: number; width: number; height: number };
  closest(selector: string): PageElement | null;
  getAttribute(name: string): string | null;
}
interface PageDocument {
  querySelector(selector: string): PageElement | null;
  elementFromPoint(x: number, y: number): PageElement | null;
}

/**
 * The first exit of `tickets` whose box on its lane, scrolled into view, is on top at its centre
 * (a click there reaches it, not a neighbour drawn over it), with that point in the viewport.
 */
async function clickableExit(page: Page, tickets: readonly number[]): Promise<{ ticket: number; x: number; y: number } | null> {
  return page.evaluate((wanted) => {
    const document = (globalThis as unknown as { document: PageDocument }).document;
    for (const ticket of wanted) {
      const node = document.querySelector(`.rows .s.exit[data-exit="${ticket}"]`);
      if (node === null) continue;
      node.scrollIntoView({ block: 'nearest', inline: 'center' });
      const box = node.getBoundingClientRect();
      const [x, y] = [box.left + box.width / 2, box.top + box.height / 2];
      const hit = document.elementFromPoint(x, y);
      if (hit !== null && hit.closest('[data-exit]')?.getAttribute('data-exit') === String(ticket)) return { ticket, x, y };
    }
    return null;
  }, [...tickets]);
}

/** The detail panel shows `exit`: its instruction and its RIP among the registers. */
async function showsExit(page: Page, exit: ExitDetail): Promise<boolean> {
  const detail = page.locator('#exit-detail');
  const heading = await detail.locator('h2').first().textContent();
  const instruction = await detail.locator('.instruction').textContent();
  const registers = await detail.locator('.registers').textContent();
  return heading === `Exit #${exit.ticket}: ${exit.reason} on vCPU ${exit.vcpu} at step ${exit.clock}`
    && instruction === `${exit.code[0].address}  ${exit.code[0].text}`
    && registers !== null && registers.includes(exit.rip);
}

for (const definition of SCENARIOS) {
  const title = `${definition.name}: the HTML timeline of a failing run loads, shows its lanes and violation, and shows an exit's disassembly`;
  if (unavailable !== null) {
    test.skip(`${title} — skipped: ${unavailable}`, () => undefined);
    continue;
  }
  test.serial(title, async (t) => {
    const run = await firstFailingRun(definition);
    if (run === null) return t.fail(`no seed up to ${SEED_BUDGET} failed`);
    const path = join(OUTPUT, `html-timeline-${definition.name}.html`);
    writeReports({ perfetto: null, html: path }, run.report, run.recording);
    const data = htmlTimelineData(buildTimeline(run.report, run.recording));
    const page = await browser!.newPage({ viewport: { width: 1400, height: 1000 } });
    t.teardown(() => page.close());
    const errors: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') errors.push(`console ${message.type()}: ${message.text()}`);
    });
    page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
    page.on('request', (request) => {
      if (!request.url().startsWith('file:') && !request.url().startsWith('data:')) errors.push(`request: ${request.url()}`);
    });
    await page.goto(pathToFileURL(path).href);
    await page.waitForSelector('.rows .s');

    for (let vcpu = 0; vcpu < definition.vcpus; vcpu++) {
      t.true(await page.locator(`[data-lane="vcpu${vcpu}"]`).isVisible(), `vCPU ${vcpu}'s lane`);
      t.true(await page.locator(`[data-lane="vcpu${vcpu}"] .s.guest`).first().isVisible(), `vCPU ${vcpu} ran`);
    }
    t.true(await page.locator('[data-lane="handler"]').isVisible(), 'the handler lane');
    t.true(await page.locator('[data-lane="handler"] .s.handler').first().isVisible(), 'a handler interval');
    const box = page.locator('#violations');
    t.true(await box.isVisible(), 'the violation box');
    for (const violation of run.report.violations) t.true((await box.textContent())?.includes(violation.oracle), violation.oracle);
    t.true(await page.locator('.ruler .vflag').first().isVisible(), 'the violation flag on the ruler');
    t.true(await page.locator('[data-lane="vcpu0"] .vline').first().isVisible(), 'the violation line across the lanes');

    // The violation's "last exit handled before it" link, clicked.
    const link = page.locator('.show-exit').first();
    const linkText = (await link.textContent()) ?? '';
    const linked = data.exits.find((exit) => String(exit.ticket) === /^#(\d+)/.exec(linkText)?.[1]);
    if (linked === undefined) return t.fail('the violation names no exit before it');
    await link.click();
    t.true(await showsExit(page, linked), `the detail of exit #${linked.ticket}`);

    // An exit's box on a vCPU lane, clicked where it is on top: another exit (the latest first), or
    // the linked one itself when the run ended at its first handler (a continuous oracle).
    const others = [...data.exits.map((exit) => exit.ticket).filter((other) => other !== linked.ticket).reverse(), linked.ticket];
    const target = await clickableExit(page, others);
    if (target === null) {
      writeFileSync(join(OUTPUT, `html-timeline-${definition.name}.png`), await page.screenshot({ fullPage: true }));
      return t.fail(`no exit box can be clicked (exits ${data.exits.map((exit) => `#${exit.ticket}`).join(', ')}; screenshot test-output/html-timeline-${definition.name}.png)`);
    }
    const { ticket } = target;
    await page.mouse.click(target.x, target.y);
    const clicked = data.exits.find((exit) => exit.ticket === ticket)!;
    t.true(await showsExit(page, clicked), `the detail of exit #${ticket}`);
    t.true(await page.locator(`.rows .s.exit[data-exit="${ticket}"].selected`).isVisible(), 'the clicked exit is highlighted');
    t.regex((await page.locator('#exit-detail .code').textContent()) ?? '', new RegExp(clicked.code[0].text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));

    // Zoom and the event-order axis redraw without errors; the screenshot shows the whole run again.
    await page.getByRole('button', { name: '+' }).click();
    await page.selectOption('#axis', 'events');
    t.true(await page.locator(`.rows .s.exit[data-exit="${ticket}"]`).isVisible(), 'the exit is still drawn on the event-order axis');
    await page.selectOption('#axis', 'steps');
    await page.getByRole('button', { name: 'fit' }).click();
    await page.click('.show-violation');
    writeFileSync(join(OUTPUT, `html-timeline-${definition.name}.png`), await page.screenshot({ fullPage: true }));
    t.deepEqual(errors, [], 'no console errors, page errors or requests');
    t.log(`seed ${run.report.seed} ${run.report.strategy}; clicked exits #${linked.ticket} and #${ticket}; screenshot test-output/html-timeline-${definition.name}.png`);
  });
}

const shrunkTitle = 'a shrunk run\'s HTML timeline tells its story and shows only the events that matter until asked for all';
if (unavailable !== null) {
  test.skip(`${shrunkTitle} — skipped: ${unavailable}`, () => undefined);
} else {
  test.serial(shrunkTitle, async (t) => {
    const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
    t.teardown(() => rig.close());
    const fixes = rig.fixes.without(memtableStaleIcache.bugs[0].fixesOff);
    const failing = [1, 2, 3, 4, 5, 6, 7, 8].map((seed) => rig.run({ seed, strategy: 'random', depth: 2, fixes })).find(failed);
    if (failing === undefined) return t.fail('no random seed up to 8 failed');
    const shrunk = shrinkFailingRun(rig, { seed: failing.seed, choices: failing.trace.choices }, fixes, { maxRuns: 300 });
    if (shrunk.recording === null) return t.fail('the shrunk run was not recorded');
    const path = join(OUTPUT, 'html-timeline-shrunk.html');
    writeReports({ perfetto: null, html: path }, shrunk.report, shrunk.recording, null, shrunk.story);
    const page = await browser!.newPage({ viewport: { width: 1400, height: 1000 } });
    t.teardown(() => page.close());
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') errors.push(`console ${message.type()}: ${message.text()}`);
    });
    await page.goto(pathToFileURL(path).href);
    await page.waitForSelector('.rows .s:not(.hidden)');
    t.true(await page.locator('#story').isVisible(), 'the story box');
    t.is(await page.locator('#story li').count(), shrunk.story.length);
    t.true(((await page.locator('#story').textContent()) ?? '').includes('preemption 1:'));
    t.true(await page.locator('#only-matter').isChecked(), 'only the events that matter, by default');
    const visible = (): Promise<number> => page.locator('.rows .s:visible').count();
    const mattering = await visible();
    await page.locator('#only-matter').uncheck();
    const all = await visible();
    t.true(mattering > 0 && mattering < all, `${mattering} of ${all} intervals matter`);
    await page.locator('#only-matter').check();
    await page.locator('.show-story').first().click();
    writeFileSync(join(OUTPUT, 'html-timeline-shrunk.png'), await page.screenshot({ fullPage: true }));
    t.deepEqual(errors, []);
    t.log(`${describeShrink(shrunk)}; ${mattering} of ${all} intervals shown; screenshot test-output/html-timeline-shrunk.png`);
  });
}
