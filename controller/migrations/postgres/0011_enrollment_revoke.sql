-- Enrollment codes an admin revoked before they were used (issue 18): refused like used ones,
-- listed as revoked. Keep in step with ../sqlite/0011_enrollment_revoke.sql.
ALTER TABLE enrollments ADD COLUMN revoked_at BIGINT;
ALTER TABLE enrollments ADD COLUMN revoked_by TEXT;
