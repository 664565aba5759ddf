// Independent verifier of RFC 9701 introspection JWTs, built on panva's `jose`.
//
// The sidecar signs with jwcrypto (Python); checking its output with a different
// implementation in a different language catches errors a same-library round trip hides.
//
// Usage: node interop/verify.mjs < jobs.jsonl > results.jsonl
// One JSON job per stdin line (blank lines are skipped), one JSON result per job, in order.
// Node starts slowly, so a whole batch goes through one process.
//
// Job:
//   jwt             compact JWS, or compact JWE when decryptKey is given
//   jwks            public JWK Set of the signer
//   issuer          expected "iss"                       (optional)
//   audience        expected "aud" (string or list)      (optional)
//   typ             expected JWS "typ"; jose normalises the "application/" prefix and case
//   algorithms      allowed JWS algs                     (optional, recommended)
//   requiredClaims  claims that must be present, e.g. ["iat", "token_introspection"]
//   maxTokenAge     e.g. "60s": "iat" must be that fresh (optional)
//   clockTolerance  seconds or "5s" (optional)
//   decryptKey      private JWK: compactDecrypt first, require protected "cty" == "JWT"
//                   (RFC 7519 §5.2: a nested JWT announces itself), then verify the inner JWS
//   keyManagementAlgorithms / contentEncryptionAlgorithms  JWE allow-lists (optional;
//                   default for the former: [decryptKey.alg] when the key names one)
// Result:
//   {"ok": true, "header": {JWS header}, "payload": {...}, "jweHeader": {...}?}
//   {"ok": false, "code": "ERR_…", "error": "ERR_…: message"}
// The process exits 0 whatever the verdicts; a non-zero exit means the verifier itself broke.

import * as readline from 'node:readline';

import {
  compactDecrypt, createLocalJWKSet, importJWK, jwtVerify,
} from 'jose';

class JobError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

async function decrypt(job) {
  const key = job.decryptKey;
  const keyManagementAlgorithms = job.keyManagementAlgorithms ?? (key.alg ? [key.alg] : undefined);
  // Import for the alg the header names; the allow-list above stops alg substitution.
  const getKey = (header) => importJWK(key, header.alg);
  const { plaintext, protectedHeader } = await compactDecrypt(job.jwt, getKey, {
    keyManagementAlgorithms,
    contentEncryptionAlgorithms: job.contentEncryptionAlgorithms,
  });
  if (typeof protectedHeader.cty !== 'string' || protectedHeader.cty.toUpperCase() !== 'JWT') {
    throw new JobError('ERR_NESTED_JWT_CTY', `JWE "cty" must be "JWT", got ${JSON.stringify(protectedHeader.cty)}`);
  }
  return { inner: new TextDecoder().decode(plaintext), jweHeader: protectedHeader };
}

async function verify(job) {
  if (job === null || typeof job !== 'object' || typeof job.jwt !== 'string') {
    throw new JobError('ERR_BAD_JOB', 'job must be an object with a string "jwt"');
  }
  if (!job.jwks || !Array.isArray(job.jwks.keys)) {
    throw new JobError('ERR_BAD_JOB', 'job must carry "jwks", a JWK Set');
  }

  let jwt = job.jwt;
  let jweHeader;
  if (job.decryptKey) {
    ({ inner: jwt, jweHeader } = await decrypt(job));
  }

  const { payload, protectedHeader } = await jwtVerify(jwt, createLocalJWKSet(job.jwks), {
    issuer: job.issuer,
    audience: job.audience,
    typ: job.typ,
    algorithms: job.algorithms,
    requiredClaims: job.requiredClaims,
    maxTokenAge: job.maxTokenAge,
    clockTolerance: job.clockTolerance,
  });
  return {
    ok: true, header: protectedHeader, payload, ...(jweHeader ? { jweHeader } : {}),
  };
}

function failure(err) {
  const code = err?.code ?? err?.name ?? 'ERR_UNKNOWN';
  return { ok: false, code, error: `${code}: ${err?.message ?? String(err)}` };
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  // Sequential on purpose: results must come out in job order.
  for await (const line of lines) {
    if (!line.trim()) continue;
    let result;
    try {
      result = await verify(JSON.parse(line));
    } catch (err) {
      result = failure(err instanceof SyntaxError ? new JobError('ERR_BAD_JOB', err.message) : err);
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
}

main().catch((err) => {
  process.stderr.write(`verify.mjs: ${err.stack ?? err}\n`);
  process.exit(1);
});
