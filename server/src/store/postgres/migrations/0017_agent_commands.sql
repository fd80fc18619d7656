-- 0017: work for a desktop's agent (a claim's per-user part). A command is
-- kept from the claim until the agent has it (`body` is then cleared: it
-- may hold a password hash), and its outcome until the claim has read it.
CREATE TABLE agent_commands (
    id BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL,
    body BYTEA,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'sent', 'done')),
    outcome INTEGER,
    message TEXT,
    created_ms BIGINT NOT NULL
);
CREATE INDEX agent_commands_session ON agent_commands (session_id, state);
CREATE INDEX agent_commands_created ON agent_commands (created_ms);
