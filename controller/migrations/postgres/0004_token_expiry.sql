-- API tokens (issue 13): an expiry, the last use, and a public id to list and revoke them by
-- (the first 16 hex digits of the hash; the token itself is never stored).
-- Keep in step with ../sqlite/0004_token_expiry.sql.
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN id TEXT;
UPDATE api_tokens SET id = substr(token_hash, 1, 16);
CREATE UNIQUE INDEX api_tokens_id ON api_tokens (id);
