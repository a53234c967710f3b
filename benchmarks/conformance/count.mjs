// The pass counts of one cache-tests run, by kind: node count.mjs SUITE_DIR RESULTS.json [LABEL]
//
// A test with no `kind` is required. Two counts per kind: the suite's own verdict with its
// dependencies honoured (cache-tests.fyi's view: a test whose setup test failed is not passed)
// and the raw `result === true` (BENCHMARKS.md's figures). Browser-only tests are left out, as the
// suite's command-line runner leaves them out. The required tests not passed are listed.
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const [suite, file, label = file] = process.argv.slice(2)
const load = (rel) => import(pathToFileURL(path.resolve(suite, rel)).href)
const tests = (await load('tests/index.mjs')).default
const { determineTestResult, resultTypes } = await load('test-engine/lib/results.mjs')
const results = JSON.parse(fs.readFileSync(file, 'utf8'))
const kinds = { required: [0, 0, 0], optimal: [0, 0, 0], check: [0, 0, 0] } // verdict, raw, run
const failing = []
for (const group of tests) {
  for (const t of group.tests) {
    if (t.browser_only) continue
    const kind = t.kind || 'required'
    kinds[kind][2]++
    const verdict = determineTestResult(tests, t.id, results, true)
    if (verdict === resultTypes.pass || verdict === resultTypes.yes) kinds[kind][0]++
    if (results[t.id] === true) kinds[kind][1]++
    if (kind === 'required' && results[t.id] !== true) failing.push(`${t.id} ${JSON.stringify(results[t.id])}`)
  }
}
console.log(`== ${label}`)
for (const k of ['required', 'optimal', 'check']) {
  console.log(`${k}: ${kinds[k][1]} / ${kinds[k][2]} (dependencies honoured: ${kinds[k][0]})`)
}
console.log('required, not passed:')
for (const f of failing) console.log(`  ${f}`)
