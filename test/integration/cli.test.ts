import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { runCli } from '../../src/cli/main.js'
import { Droplet, User } from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

describe('wincloud-data rotate-keys', () => {
  it('draws a progress bar on a terminal (a line per batch otherwise) up to every value rotated', async () => {
    const k1 = randomBytes(32).toString('base64')
    const k2 = randomBytes(32).toString('base64')
    const { db, url, cleanup } = await openTestDatabase({ encryption: { keys: { k1 }, current: 'k1' } })
    try {
      const user = await db
        .system('t')
        .repo(User)
        .create({ email: 'cli@example.com', username: 'cli', passwordHash: 'x' })
      await db
        .scope(user)
        .repo(Droplet)
        .bulkCreate(
          Array.from({ length: 7 }, (_, i) => ({ name: `d${i}`, region: 'nyc3', size: 's', adminPassword: `p${i}` })),
        )
      const env = { DATABASE_URL: url, WINCLOUD_ENCRYPTION: JSON.stringify({ keys: { k1, k2 }, current: 'k2' }) }
      const out: string[] = []
      const err: string[] = []
      const status: string[] = []
      const code = await runCli(['rotate-keys', '--batch-size', '3'], {
        out: (line) => out.push(line),
        err: (line) => err.push(line),
        status: (line) => status.push(line),
        env,
      })
      expect(code).toBe(0)
      expect(status.filter((line) => line !== '')).toEqual([
        expect.stringMatching(/^\[#{10}-{14}\] {2}43% {2}3 \/ 7 {2}droplets\.admin_password_ciphertext$/),
        expect.stringMatching(/^\[#{21}-{3}\] {2}86% {2}6 \/ 7 /),
        expect.stringMatching(/^\[#{24}\] 100% {2}7 \/ 7 /),
      ])
      expect(status.at(-1)).toBe('') // the bar is cleared before the summary
      expect(err).toEqual([])
      expect(out[0]).toMatch(/^rotated 7 values in/)
      expect(out).toContain('droplets.admin_password_ciphertext: k2 7')
      // Without a terminal: the same progress, a line per batch on stderr (rotating back to k1 this time).
      const plain: string[] = []
      const back = { ...env, WINCLOUD_ENCRYPTION: JSON.stringify({ keys: { k1, k2 }, current: 'k1' }) }
      expect(
        await runCli(['rotate-keys', '--batch-size', '5'], {
          out: () => undefined,
          err: (l) => plain.push(l),
          env: back,
        }),
      ).toBe(0)
      expect(plain).toEqual([
        expect.stringMatching(/ {2}71% {2}5 \/ 7 {2}droplets/),
        expect.stringMatching(/ 100% {2}7 \/ 7 {2}droplets/),
      ])
      expect(JSON.stringify([out, err, status])).not.toContain(k1)
    } finally {
      await cleanup()
    }
  })
})
