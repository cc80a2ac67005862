ALTER TABLE leads
    ADD CONSTRAINT leads_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    ADD CONSTRAINT leads_status_check CHECK (status IN ('new', 'contacted', 'qualified', 'won', 'lost')),
    ADD CONSTRAINT leads_p_score_check CHECK (p_score BETWEEN 0 AND 100);

ALTER TABLE message_templates
    ADD CONSTRAINT message_templates_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);

ALTER TABLE message_events
    ADD CONSTRAINT message_events_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    ADD CONSTRAINT message_events_lead_id_fkey FOREIGN KEY (lead_id) REFERENCES leads (id),
    ADD CONSTRAINT message_events_template_id_fkey FOREIGN KEY (template_id) REFERENCES message_templates (id),
    ADD CONSTRAINT message_events_channel_check CHECK (channel IN ('email', 'linkedin', 'whatsapp', 'sms')),
    ADD CONSTRAINT message_events_direction_check CHECK (direction IN ('inbound', 'outbound')),
    ADD CONSTRAINT message_events_status_check
        CHECK (status IN ('queued', 'sent', 'delivered', 'opened', 'replied', 'bounced', 'failed'));

ALTER TABLE crm_notes
    ADD CONSTRAINT crm_notes_lead_id_fkey FOREIGN KEY (lead_id) REFERENCES leads (id),
    ADD CONSTRAINT crm_notes_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);

ALTER TABLE rlhf_feedback_sessions
    ADD CONSTRAINT rlhf_feedback_sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    ADD CONSTRAINT rlhf_feedback_sessions_feedback_type_check CHECK (feedback_type IN ('draft', 'reply', 'score')),
    ADD CONSTRAINT rlhf_feedback_sessions_rating_check CHECK (rating BETWEEN 1 AND 5);
