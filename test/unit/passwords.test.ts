import { describe, expect, it } from 'vitest'
import { hashPassword, passwordNeedsRehash, ValidationError, verifyPassword } from '../../src/index.js'

const fast = { cost: 10 }

describe('passwords', () => {
  it('hashes to a PHC scrypt string with a fresh salt each time', async () => {
    const a = await hashPassword('correct horse', fast)
    const b = await hashPassword('correct horse', fast)
    expect(a).toMatch(/^\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
    expect(a).not.toBe(b)
    expect(a).not.toContain('correct horse')
  })

  it('verifies the right password and refuses others', async () => {
    const hash = await hashPassword('correct horse', fast)
    expect(await verifyPassword('correct horse', hash)).toBe(true)
    expect(await verifyPassword('correct horsf', hash)).toBe(false)
    expect(await verifyPassword('', hash)).toBe(false)
  })

  it('is false, never a throw, for malformed hashes', async () => {
    for (const bad of [
      '',
      'plain',
      '$scrypt$ln=99,r=8,p=1$AAAA$BBBB',
      '$2b$12$abc',
      '$scrypt$ln=10,r=8,p=1$AAAA$AAAA',
    ]) {
      expect(await verifyPassword('x', bad)).toBe(false)
    }
  })

  it('rejects empty and absurd passwords and cost settings with a ValidationError', async () => {
    await expect(hashPassword('', fast)).rejects.toBeInstanceOf(ValidationError)
    await expect(hashPassword('x'.repeat(1025), fast)).rejects.toBeInstanceOf(ValidationError)
    await expect(hashPassword('ok', { cost: 30 })).rejects.toBeInstanceOf(ValidationError)
  })

  it('tells when a hash was made with other settings', async () => {
    const hash = await hashPassword('pw', fast)
    expect(passwordNeedsRehash(hash, fast)).toBe(false)
    expect(passwordNeedsRehash(hash)).toBe(true)
    expect(passwordNeedsRehash('$2b$12$legacy')).toBe(true)
  })
})
