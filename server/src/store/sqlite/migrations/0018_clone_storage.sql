-- 0018: the storage each template's clones start from on each node (the
-- module's `template_storage`: one name on two nodes is one shared
-- storage), and the storage a placed session's clone starts from, so the
-- clone turns count per storage as well as per node.

ALTER TABLE nodes ADD COLUMN template_storage TEXT NOT NULL DEFAULT '{}';
ALTER TABLE sessions ADD COLUMN clone_storage TEXT;
