-- Running a job (issue 17): each try of a job (a retry is the next) and the start command
-- it sent. The file goes to the printer as kitt-<job>-<attempt>, so each try is its own file
-- there and the command's id follows from the job and the try.
ALTER TABLE jobs ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN command_id TEXT;
