-- 0019: the template catalog. Each session's size (its name and disk;
-- its cores and memory are the columns 0017 added), so a create's desktop
-- is built at the size it asked for, whichever server builds it. Empty for
-- a session an older server made: built at [vm]'s size.

ALTER TABLE sessions ADD COLUMN size TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN disk_gb INTEGER NOT NULL DEFAULT 0;

-- A portal sign-in's groups among those the catalog's templates name (a
-- JSON array), read from the directory at sign-in and at each recheck.
ALTER TABLE web_signins ADD COLUMN groups TEXT NOT NULL DEFAULT '[]';
