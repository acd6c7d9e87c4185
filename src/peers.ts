import { ConfigError } from './errors/index.js'

/** The peer dependencies the main entry cannot load without, with the range the package asks for. */
const REQUIRED_PEERS: readonly (readonly [name: string, range: string])[] = [
  ['pg', '^8.11.0'],
  ['knex', '^3.1.0'],
  ['objection', '^3.1.5'],
]

/**
 * The first missing peer dependency as a `ConfigError` naming it and the install command, or undefined when all are
 * there. `resolve` finds a package from the library's own location (it throws when it cannot).
 *
 * @internal
 */
export function missingPeer(resolve: (name: string) => unknown): ConfigError | undefined {
  const missing = REQUIRED_PEERS.filter(([name]) => {
    try {
      resolve(name)
      return false
    } catch (error) {
      const code = (error as { code?: unknown } | null)?.code
      if (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') return true
      throw error
    }
  })
  if (missing.length === 0) return undefined
  const names = missing.map(([name]) => name)
  const install = missing.map(([name, range]) => `${name}@${range}`).join(' ')
  return new ConfigError(
    'dependencies',
    `are missing: @wincloud/data needs ${names.join(', ')} installed beside it (peer ${missing.length === 1 ? 'dependency' : 'dependencies'}). Install with: npm install ${install}`,
  )
}

// Checked as the package loads, before any module that imports a peer: a missing one is this error, not a bare
// "Cannot find module". (The package's implementation is CommonJS, so `require` is there; under an ES-module loader
// of the sources, as in the tests, the check is left to the loader.)
if (typeof require === 'function' && typeof require.resolve === 'function') {
  const error = missingPeer((name) => require.resolve(name))
  if (error !== undefined) throw error
}
