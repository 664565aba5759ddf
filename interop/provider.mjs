// Test-only OAuth 2.0 authorization server built on node-oidc-provider.
//
// It plays two roles for the sidecar's interop tests, for the *same* opaque token:
//   * the legacy upstream: POST /token/introspection without the RFC 9701 Accept header
//     answers plain RFC 7662 JSON;
//   * the reference implementation: with `Accept: application/token-introspection+jwt`
//     it answers its own RFC 9701 JWT (signed, or nested sign-then-encrypt JWE).
//
// Usage: node interop/provider.mjs CONFIG.json
//   CONFIG.json (every key optional):
//     port                0 = pick a free port on 127.0.0.1
//     issuer              exact issuer; "{port}" is replaced by the bound port;
//                         default http://127.0.0.1:<port>
//     jwks                private JWK Set of the provider; generated when absent
//     clients             oidc-provider client metadata; default: see defaultClients()
//     scopes              scopes clients may request (default ["read", "write"])
//     ttl                 {"ClientCredentials": seconds} (default 600)
//     extra_token_claims  object merged into every access token, hence into introspection
//
// Once listening it prints ONE JSON line on stdout and nothing else ever goes to stdout:
//   {"ready": true, "port", "issuer", "jwks": <public JWKS as served at /jwks>,
//    "clients": {<client_id>: {client_secret, ..., "encryption_jwks": <private JWKS>?}}}
// It serves until SIGTERM/SIGINT, or until stdin reaches EOF when stdin is a pipe
// (so a parent test process that dies takes the provider with it).
//
// This is NOT a production configuration: in-memory storage, plain http, static secrets.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

// stdout is a protocol channel (the ready line). oidc-provider prints its NOTICEs with
// console.info (stdout), so send every console line to stderr instead.
console.log = console.error;
console.info = console.error;

const SIGNING_ALGS = [
  'RS256', 'RS384', 'RS512',
  'PS256', 'PS384', 'PS512',
  'ES256', 'ES384', 'ES512',
  'EdDSA', 'Ed25519', // Ed25519 is the fully-specified name (RFC 9864) of EdDSA over Ed25519
];
const ENCRYPTION_ALGS = [
  'RSA-OAEP', 'RSA-OAEP-256', 'RSA-OAEP-384', 'RSA-OAEP-512',
  'ECDH-ES', 'ECDH-ES+A128KW', 'ECDH-ES+A192KW', 'ECDH-ES+A256KW',
  // Symmetric ones derive the key from the client secret; harmless to allow.
  'A128KW', 'A192KW', 'A256KW', 'A128GCMKW', 'A192GCMKW', 'A256GCMKW', 'dir',
];
const ENCRYPTION_ENCS = [
  'A128CBC-HS256', 'A192CBC-HS384', 'A256CBC-HS512', 'A128GCM', 'A192GCM', 'A256GCM',
];

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

function privateJwk(kind, options, extra) {
  const { privateKey } = crypto.generateKeyPairSync(kind, options);
  return { ...privateKey.export({ format: 'jwk' }), ...extra };
}

function publicJwk(jwk) {
  return Object.fromEntries(Object.entries(jwk).filter(([k]) => !PRIVATE_MEMBERS.includes(k)));
}

function isPrivate(jwk) {
  return PRIVATE_MEMBERS.some((k) => k in jwk);
}

// One signing key per curve/type so that every JWS algorithm in SIGNING_ALGS has a key:
// RSA serves RS*/PS*, each EC curve one ES*, Ed25519 serves EdDSA.
function generateProviderJwks() {
  return {
    keys: [
      privateJwk('rsa', { modulusLength: 2048 }, { kid: 'rsa', use: 'sig' }),
      privateJwk('ec', { namedCurve: 'P-256' }, { kid: 'ec-p256', use: 'sig', alg: 'ES256' }),
      privateJwk('ec', { namedCurve: 'P-384' }, { kid: 'ec-p384', use: 'sig', alg: 'ES384' }),
      privateJwk('ec', { namedCurve: 'P-521' }, { kid: 'ec-p521', use: 'sig', alg: 'ES512' }),
      privateJwk('ed25519', {}, { kid: 'ed25519', use: 'sig', alg: 'EdDSA' }),
    ],
  };
}

// A private encryption key for a resource server that asked for an asymmetric JWE alg
// but brought no keys: RSA for RSA-OAEP*, P-256 for ECDH-ES*.
function generateEncryptionKey(clientId, alg) {
  const extra = { kid: `${clientId}-enc`, use: 'enc', alg };
  if (alg.startsWith('RSA-OAEP')) return privateJwk('rsa', { modulusLength: 2048 }, extra);
  if (alg.startsWith('ECDH-ES')) return privateJwk('ec', { namedCurve: 'P-256' }, extra);
  return undefined; // A*KW / dir use the client secret, no key needed
}

function defaultClients() {
  const rs = (id, alg) => ({
    client_id: id,
    client_secret: `${id}-secret`,
    // A pure resource server: it only calls introspection, never obtains tokens itself.
    grant_types: [],
    response_types: [],
    introspection_signed_response_alg: alg,
  });
  return [
    {
      client_id: 'app',
      client_secret: 'app-secret',
      grant_types: ['client_credentials'],
      response_types: [], // with no response types, redirect_uris are not required
      scope: 'read write',
    },
    rs('rs-rs256', 'RS256'),
    rs('rs-es256', 'ES256'),
    rs('rs-eddsa', 'EdDSA'),
    {
      ...rs('rs-enc', 'ES256'), // oidc-provider ≥ 8 wants the signed alg whenever encrypting
      introspection_encrypted_response_alg: 'RSA-OAEP-256',
      introspection_encrypted_response_enc: 'A128CBC-HS256',
      // jwks filled in by prepareClients(): the public half goes to the provider,
      // the private half to the ready line for the tests to decrypt with.
    },
  ];
}

// Splits client key material: the provider must only ever see public client keys
// (it rejects private members), the tests need the private ones to decrypt.
function prepareClients(clients) {
  const forProvider = [];
  const report = {};
  for (const client of clients) {
    const entry = structuredClone(client);
    let privateKeys = (entry.jwks?.keys ?? []).filter(isPrivate);
    const alg = entry.introspection_encrypted_response_alg;
    if (alg && !entry.jwks && !entry.jwks_uri) {
      const key = generateEncryptionKey(entry.client_id, alg);
      if (key) privateKeys = [key];
      if (key) entry.jwks = { keys: [key] };
    }
    if (entry.jwks) entry.jwks = { keys: entry.jwks.keys.map(publicJwk) };
    forProvider.push(entry);

    const { jwks, ...metadata } = entry;
    report[entry.client_id] = {
      ...metadata,
      ...(privateKeys.length ? { encryption_jwks: { keys: privateKeys } } : {}),
    };
  }
  return { forProvider, report };
}

function readConfig(path) {
  if (!path) fail('usage: node provider.mjs CONFIG.json');
  try {
    return JSON.parse(fs.readFileSync(path, 'utf8'));
  } catch (err) {
    return fail(`cannot read config ${path}: ${err.message}`);
  }
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server.address().port));
  });
}

// node:http rather than fetch(): fetch refuses the WHATWG "bad ports" (1, 6000, ...).
function getJson(url) {
  return new Promise((resolve, reject) => {
    http.get(url, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(err);
        }
      });
    }).on('error', reject);
  });
}

async function main() {
  const config = readConfig(process.argv[2]);

  // Bind first: with port 0 the issuer (a constructor argument) depends on the port.
  const server = http.createServer();
  const port = await listen(server, config.port ?? 0);
  const issuer = (config.issuer ?? 'http://127.0.0.1:{port}').replaceAll('{port}', String(port));

  const { forProvider, report } = prepareClients(config.clients ?? defaultClients());
  const extraTokenClaims = config.extra_token_claims;

  // Plain http on 127.0.0.1 needs no workaround: oidc-provider accepts http issuers
  // (isWebUri), and the endpoints used here (token, introspection, revocation, jwks,
  // discovery) never check ctx.secure; only interaction cookies would, and those are
  // off. Koa's `proxy` stays false: there is no TLS-terminating proxy in front.
  const provider = new Provider(issuer, {
    jwks: config.jwks ?? generateProviderJwks(),
    clients: forProvider,
    scopes: config.scopes ?? ['read', 'write'],
    // Random cookie keys silence the dev warning; no flow here uses cookies.
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: false }, // only client_credentials, no login UI
      clientCredentials: { enabled: true },
      encryption: { enabled: true },
      introspection: {
        enabled: true,
        // The library default, spelt out so it does not print a "SHOULD change" notice:
        // any authenticated client may introspect any token (RFC 7662 allows this policy).
        allowedPolicy: async (ctx, client, token) => client.clientAuthMethod !== 'none'
          || token.clientId === ctx.oidc.client.clientId,
      },
      jwtIntrospection: { enabled: true },
      revocation: {
        enabled: true,
        // Only the client a token was issued to may revoke it; another authenticated client
        // gets 400 invalid_request (the library default, spelt out to silence its notice).
        allowedPolicy: async (ctx, client, token) => {
          if (token.clientId === client.clientId) return true;
          if (client.clientAuthMethod === 'none') return false;
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        },
      },
    },
    enabledJWA: {
      introspectionSigningAlgValues: SIGNING_ALGS,
      introspectionEncryptionAlgValues: ENCRYPTION_ALGS,
      introspectionEncryptionEncValues: ENCRYPTION_ENCS,
    },
    ttl: { ClientCredentials: config.ttl?.ClientCredentials ?? 600 },
    extraTokenClaims: async () => extraTokenClaims,
  });

  // A 500 answer alone says nothing; put the stack on stderr, where a failing test reads it
  // (NodeProvider.stderr_text()).
  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`provider.mjs: server_error on ${ctx.path}: ${err.stack}\n`);
  });

  server.on('request', provider.callback());

  // Report the JWKS exactly as served (oidc-provider adds alg/use to keys that lack them).
  const jwks = await getJson(`http://127.0.0.1:${port}/jwks`);

  process.stdout.write(`${JSON.stringify({
    ready: true, port, issuer, jwks, clients: report,
  })}\n`);

  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections(); // keep-alive sockets would hold close() open
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Watch stdin only when it is a pipe: /dev/null (nohup, CI `&`) would end at once.
  if (fs.fstatSync(0).isFIFO()) {
    process.stdin.on('end', stop);
    process.stdin.resume();
  }
}

main().catch((err) => fail(err.stack ?? String(err)));
