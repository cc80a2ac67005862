-- The desk app's own RLS migration, written the way most first versions are (Supabase's advisor flags both):
-- auth.uid() evaluated for every row, and two permissive SELECT policies for one role on each large table.
-- auth.uid() as Supabase defines it: the subject of the JWT claims the API sets per request.
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid
$$;
GRANT USAGE ON SCHEMA auth TO anon, authenticated;
CREATE POLICY "authors read their own tickets" ON app."Tickets" FOR SELECT TO authenticated
    USING (author_id = auth.uid());
CREATE POLICY "authors read their comments" ON app.comments FOR SELECT TO authenticated
    USING (author_id = auth.uid());
GRANT INSERT ON app."Tickets" TO authenticated;
