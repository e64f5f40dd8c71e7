-- One scanner's entry in a candidates pass (SPEC §6): a tuple (eligible, the
-- scanner's index in the pass, after the watermark) for the session row being
-- folded. Every parameter here is the scanner's own: the pass prefixes them
-- with s<index>_ (and its filter's too). A session qualifies when it ended after
-- the watermark keyset (on `end` alone when no session id is stored) and started
-- within the lookback, or (late data) when the watermark passed it but events
-- arrived after what the previous sweep saw, and it ended within the lateness
-- horizon; and it ended at or before the frontier and passes the filter.
(
    toUInt8(
        session_end <= {window_end:DateTime64(6, 'UTC')}
        AND (
            (
                if({watermark_session_id:String} = '',
                   session_end > {watermark_end:DateTime64(6, 'UTC')},
                   (session_end, session_id) > ({watermark_end:DateTime64(6, 'UTC')}, {watermark_session_id:String}))
                AND session_start >= {min_start:DateTime64(6, 'UTC')}
            )
            OR (
                -- Late: the watermark passed it before its last events arrived.
                {late_enabled:Bool}
                AND NOT if({watermark_session_id:String} = '',
                   session_end > {watermark_end:DateTime64(6, 'UTC')},
                   (session_end, session_id) > ({watermark_end:DateTime64(6, 'UTC')}, {watermark_session_id:String}))
                AND max_inserted_at > {late_since:DateTime64(6, 'UTC')}
                AND session_end > {late_floor:DateTime64(6, 'UTC')}
                AND session_start >= {late_min_start:DateTime64(6, 'UTC')}
            )
        )
        AND (
            -- @filter
        )
    ),
    {index:UInt32},
    toUInt8(if({watermark_session_id:String} = '',
       session_end > {watermark_end:DateTime64(6, 'UTC')},
       (session_end, session_id) > ({watermark_end:DateTime64(6, 'UTC')}, {watermark_session_id:String})))
)
