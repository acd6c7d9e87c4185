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

  it('keeps a bcrypt hash that a password of 72 UTF-8 bytes or more verified (bcrypt checked only 72)', () => {
    const bcrypt = `$2b$04$${'a'.repeat(53)}`
    expect(passwordNeedsRehash(bcrypt)).toBe(true)
    expect(passwordNeedsRehash(bcrypt, fast, 'x'.repeat(71))).toBe(true)
    expect(passwordNeedsRehash(bcrypt, fast, 'x'.repeat(72))).toBe(false)
    expect(passwordNeedsRehash(bcrypt, fast, 'ü'.repeat(36))).toBe(false)
    expect(passwordNeedsRehash(bcrypt, fast, 'pw\0pw')).toBe(false)
  })

  it('refuses to hash, and never verifies, a password with a NUL or a lone surrogate', async () => {
    for (const bad of ['pw\0', '\0', 'p\uD800w', '\uDC00']) {
      await expect(hashPassword(bad, fast)).rejects.toBeInstanceOf(ValidationError)
    }
    // HMAC pads short keys with zero bytes, so scrypt alone would take "pw\0" for "pw".
    const hash = await hashPassword('pw', fast)
    expect(await verifyPassword('pw', hash)).toBe(true)
    expect(await verifyPassword('pw\0', hash)).toBe(false)
    expect(await verifyPassword('pw\0\0', hash)).toBe(false)
    const replaced = await hashPassword('p\uFFFDw', fast)
    expect(await verifyPassword('p\uFFFDw', replaced)).toBe(true)
    expect(await verifyPassword('p\uD800w', replaced)).toBe(false)
  })
})
