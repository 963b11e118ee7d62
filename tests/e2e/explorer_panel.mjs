// Open a study's page in Orthanc Explorer in headless Chromium, wait for ScintiSeg's panel
// (plugin/scintiseg/explorer/scintiseg-explorer.js) to show a status, take a screenshot, and print one
// JSON line: the panel's lines and links.
//
//   node tests/e2e/explorer_panel.mjs --url http://host:port/app/explorer.html#study?uuid=ID
//        --out shot.png [--timeout 60] [--chromium /usr/bin/chromium] [--wait-for TEXT]
//
// --wait-for: the panel counts as ready only once one of its lines contains TEXT.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function parseArgs(argv) {
  const args = { timeout: '60', chromium: '/usr/bin/chromium' };
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    args[argv[i].slice(2)] = argv[i + 1];
  }
  if (!args.url || !args.out) throw new Error('--url and --out are required');
  return args;
}

function panelState(waitFor) {
  const panel = document.getElementById('scintiseg-panel');
  if (!panel) return { ready: false, lines: [], links: [] };
  const lines = Array.from(panel.querySelectorAll('li')).map((li) => li.textContent.trim());
  const links = Array.from(panel.querySelectorAll('a')).map((a) => ({ text: a.textContent.trim(), href: a.href }));
  const status = lines.some((l) => l.startsWith('Status:') || l.includes('not available'));
  return { ready: status && (!waitFor || lines.some((l) => l.includes(waitFor))), lines, links };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const profile = mkdtempSync(join(tmpdir(), 'scintiseg-explorer-'));
  let state = { ready: false, lines: [], links: [] };
  let error = null;
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium,
    headless: true,
    viewport: { width: 1100, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--disable-dev-shm-usage'],
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    await page.goto(args.url, { waitUntil: 'domcontentloaded', timeout: 60000 });
    const deadline = Date.now() + Number(args.timeout) * 1000;
    while (Date.now() < deadline) {
      state = await page.evaluate(panelState, args['wait-for'] || '').catch(() => state);
      if (state.ready) break;
      await page.waitForTimeout(300);
    }
    await page.screenshot({ path: args.out, fullPage: true });
  } catch (e) {
    error = String(e && e.stack ? e.stack : e);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify({ ok: state.ready && !error, state, error }) + '\n');
  process.exit(state.ready && !error ? 0 : 1);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e) }) + '\n');
  process.exit(2);
});
