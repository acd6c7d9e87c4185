import { defineCommand, UsageError } from '../command.js'
import { withDatabase } from '../with-database.js'

/**
 * `wincloud-data audit verify|enable-chain|purge`: the audit log's hash chain.
 *
 * @internal
 */
export const auditCommand = defineCommand({
  name: 'audit',
  summary: {
    verify: "check the audit log's hash chain; exit 3 names the first tampered row",
    'enable-chain': "turn the audit log's hash chain on (for good)",
    purge: 'delete audit rows older than --before, recording that it did (--reason)',
  },
  help: `Usage: wincloud-data audit <verify|enable-chain|purge> [options] [--url <url>]

  verify         walk the hash chain, recomputing every hash; prints how many rows were checked.
                 Exits 0 when intact (or when the chain is off), 3 naming the first row that was modified,
                 deleted or inserted out of band.
  enable-chain   turn the hash chain on (idempotent; needs the owner of audit_logs)
  purge          --before <ISO date> --reason <text>: delete audit rows written before the date, keeping the
                 chain verifiable, and record the purge (needs the owner of audit_logs)

Reads DATABASE_URL unless --url is given.`,
  options: { before: { type: 'string' }, reason: { type: 'string' } },
  async run({ sub, values, url, io }) {
    let before: Date | undefined
    if (sub === 'purge') {
      before = values.before === undefined ? undefined : new Date(values.before)
      if (before === undefined || Number.isNaN(before.getTime())) {
        throw new UsageError('audit purge needs --before <ISO date>')
      }
      if (!values.reason) throw new UsageError('audit purge needs --reason <text>')
    }
    return withDatabase(url, async (db) => {
      if (sub === 'enable-chain') {
        const { enabledAt } = await db.audit.enableHashChain()
        io.out(`hash chain on since ${enabledAt.toISOString()}`)
        return 'ok'
      }
      if (sub === 'purge') {
        const { deleted } = await db.audit.purge({ before: before!, reason: values.reason! })
        io.out(`purged ${deleted} audit rows written before ${before!.toISOString()}`)
        return 'ok'
      }
      const report = await db.audit.verify()
      if (!report.enabled) io.out('hash chain is off: nothing to verify (wincloud-data audit enable-chain)')
      else if (report.ok) io.out(`audit log intact: ${report.checked} rows checked after #${report.anchorSeq}`)
      else {
        const p = report.problem!
        io.out(
          `audit log TAMPERED: ${p.kind} at ${p.id === null ? 'the end of the chain' : `row ${p.id}`}` +
            `${p.seq === null ? '' : ` (#${p.seq})`}: ${p.message}; ${report.checked} rows were intact before it`,
        )
        return 'checkFailed'
      }
      return 'ok'
    })
  },
})
