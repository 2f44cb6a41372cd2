-- Creates the role and database Parley uses on a YugabyteDB cluster. Run it once as a superuser
-- (the `yugabyte` user); running it again changes nothing:
--
--   ysqlsh -h HOST -p 5433 -U yugabyte -d yugabyte -v ON_ERROR_STOP=1 \
--          -v parley_password='…' -f yugabyte/create_database.sql
--
-- Leave out -v parley_password on a cluster without YSQL authentication (ysql_enable_auth=false).
-- `parley migrate` then creates the schemas identity, conversations and messages inside the
-- database, owned by the role.

SELECT 'CREATE ROLE parley LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'parley')
\gexec

\if :{?parley_password}
ALTER ROLE parley WITH PASSWORD :'parley_password';
\endif

-- COLOCATION = false gives every table its own tablets, so the messages table can spread over
-- all nodes, even on a cluster whose databases are colocated by default.
SELECT 'CREATE DATABASE parley WITH OWNER = parley COLOCATION = false'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'parley')
\gexec

-- Only the owner (and superusers) may connect.
REVOKE ALL ON DATABASE parley FROM PUBLIC;
