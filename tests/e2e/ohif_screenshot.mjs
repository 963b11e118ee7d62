// Open a study in OHIF in headless Chromium, wait until its DICOM SEG is loaded and shown,
// take a screenshot and print one JSON line describing what happened.
//
//   node tests/e2e/ohif_screenshot.mjs --url URL --out shot.png [--timeout 90]
//        [--user U --password P] [--chromium /usr/bin/chromium] [--profile DIR]
//
// "Loaded" means: OHIF's segmentation service holds a segmentation with at least one segment
// and a viewport shows it (window.services is OHIF's services manager, set by the viewer).
// Exit status 0 when loaded, 1 otherwise (the screenshot is taken in both cases).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function parseArgs(argv) {
  const args = { timeout: '90', chromium: '/usr/bin/chromium' };
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error(`bad argument ${argv[i]}`);
    }
    args[argv[i].slice(2)] = argv[i + 1];
  }
  if (!args.url || !args.out) throw new Error('--url and --out are required');
  return args;
}

// Runs in the page: what the segmentation service and the viewports say.
function segmentationState() {
  const services = window.services;
  if (!services || !services.segmentationService) return { ready: false, why: 'no OHIF services yet' };
  const segs = services.segmentationService.getSegmentations() || [];
  const summary = segs.map((s) => ({
    id: s.segmentationId,
    label: s.label,
    segments: Object.values(s.segments || {})
      .filter(Boolean)
      .map((g) => ({ index: g.segmentIndex, label: g.label, color: g.color })),
  }));
  const shownIn = [];
  const vps = services.viewportGridService?.getState()?.viewports;
  if (vps && segs.length) {
    for (const id of vps.keys()) {
      const reps = services.segmentationService.getSegmentationRepresentations(id) || [];
      if (reps.length) shownIn.push(id);
    }
  }
  // colours as drawn in the first viewport showing the segmentation ([r, g, b, a])
  if (shownIn.length) {
    for (const s of summary) {
      for (const g of s.segments) {
        try {
          g.color = services.segmentationService.getSegmentColor(shownIn[0], s.id, g.index);
        } catch (e) {
          g.color = null;
        }
      }
    }
  }
  // where the image is, in CSS pixels (the screenshot uses the same, deviceScaleFactor 1)
  let viewport = null;
  const el = document.querySelector('.viewport-element') || document.querySelector('canvas');
  if (el) {
    const r = el.getBoundingClientRect();
    viewport = { x: Math.round(r.x), y: Math.round(r.y), width: Math.round(r.width), height: Math.round(r.height) };
  }
  const ready = summary.some((s) => s.segments.length > 0) && shownIn.length > 0;
  return { ready, segmentations: summary, shownIn, viewport, why: ready ? '' : 'segmentation not shown yet' };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const profile = args.profile || mkdtempSync(join(tmpdir(), 'scintiseg-chromium-'));
  const started = Date.now();
  const consoleLines = [];
  const failedRequests = [];
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium,
    headless: true,
    viewport: { width: 1280, height: 900 },
    httpCredentials: args.user ? { username: args.user, password: args.password || '' } : undefined,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
  let state = { ready: false, why: 'not started' };
  let error = null;
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (msg) => {
      if (['error', 'warning'].includes(msg.type())) consoleLines.push(`${msg.type()}: ${msg.text()}`.slice(0, 400));
    });
    page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`.slice(0, 400)));
    page.on('response', (r) => {
      if (r.status() >= 400) failedRequests.push(`${r.status()} ${r.url()}`.slice(0, 300));
    });
    await page.goto(args.url, { waitUntil: 'domcontentloaded', timeout: 60000 });
    const deadline = started + Number(args.timeout) * 1000;
    while (Date.now() < deadline) {
      state = await page.evaluate(segmentationState).catch((e) => ({ ready: false, why: String(e) }));
      if (state.ready) break;
      await page.waitForTimeout(500);
    }
    if (state.ready) {
      // let the viewport render the labelmap, then hide the mouse-over overlays
      await page.waitForTimeout(2500);
      await page.mouse.move(0, 0);
      state = await page.evaluate(segmentationState);
    }
    await page.screenshot({ path: args.out });
  } catch (e) {
    error = String(e && e.stack ? e.stack : e);
  } finally {
    await context.close();
    if (!args.profile) rmSync(profile, { recursive: true, force: true });
  }
  const report = {
    ok: Boolean(state.ready) && !error,
    state,
    error,
    seconds: (Date.now() - started) / 1000,
    console: consoleLines.slice(0, 40),
    failedRequests: failedRequests.slice(0, 40),
  };
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(report.ok ? 0 : 1);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e) }) + '\n');
  process.exit(2);
});
