-- Command expiry (issue 13): when a command stops being valid at the agent (its envelope's
-- expires_at, in Unix ms). A command still `sent` after it is shown as `expired`.
-- Keep in step with ../postgres/0003_command_expiry.sql.
ALTER TABLE commands ADD COLUMN expires_at INTEGER;
CREATE INDEX commands_status_expiry ON commands (status, expires_at);
