-- demo model 1 compiled for spark, as of 2026-06-01, restricted to the people in table touched_people.
-- Regenerate: LEADREFINERY_UPDATE_SNAPSHOTS=1 pytest tests/unit/test_model_snapshots.py
WITH lr_pop AS (
  SELECT
    person_id,
    first_seen,
    person_id AS pk
  FROM people
  WHERE
    first_seen <= CAST('2026-06-01 00:00:00.000000' AS TIMESTAMP)
    AND person_id IN (
      SELECT
        person_id
      FROM touched_people
    )
), lr_th AS (
  SELECT
    person_id,
    key,
    nk,
    GET_JSON_OBJECT(CONCAT('{"v":', value, '}'), '$.v') AS v
  FROM (
    SELECT
      person_id,
      key,
      nk,
      value,
      ROW_NUMBER() OVER (
        PARTITION BY person_id, key
        ORDER BY CASE WHEN key IN ('$first_name', '$first_source') THEN ts END NULLS LAST, CASE WHEN key IN ('$first_name', '$first_source') THEN message_id END NULLS LAST, ts DESC, message_id DESC
      ) AS rn
    FROM (
      SELECT
        person_id,
        key,
        LOWER(REPLACE(REPLACE(REPLACE(key, '_', ''), ' ', ''), '-', '')) AS nk,
        ts,
        message_id,
        value
      FROM trait_history
      WHERE
        ts <= CAST('2026-06-01 00:00:00.000000' AS TIMESTAMP)
        AND (
          key IN (
            '$account_id',
            '$first_name',
            '$first_source',
            'emailVerified',
            'phoneCountry',
            'phoneVerified',
            'productInterest'
          )
          OR LOWER(REPLACE(REPLACE(REPLACE(key, '_', ''), ' ', ''), '-', '')) IN (
            'campaign',
            'company',
            'companyname',
            'email',
            'emailaddress',
            'jobtitle',
            'leadsource',
            'organisation',
            'organization',
            'position',
            'referralcode',
            'referralsource',
            'role',
            'signupsource',
            'source',
            'title',
            'utmcampaign',
            'utmsource'
          )
        )
        AND person_id IN (
          SELECT
            person_id
          FROM touched_people
        )
    ) AS t
  ) AS t
  WHERE
    rn = 1
), lr_prof AS (
  SELECT
    pop.person_id,
    pop.first_seen AS p_first_seen,
    NULLIF(
      TRIM(
        COALESCE(
          MAX(CASE WHEN th.nk = 'campaign' THEN th.v END),
          MAX(CASE WHEN th.nk = 'referralcode' THEN th.v END),
          MAX(CASE WHEN th.nk = 'utmcampaign' THEN th.v END),
          MAX(CASE WHEN th.key = '$first_name' THEN th.v END)
        )
      ),
      ''
    ) AS p_campaign,
    NULLIF(
      TRIM(
        COALESCE(
          MAX(CASE WHEN th.nk = 'company' THEN th.v END),
          MAX(CASE WHEN th.nk = 'companyname' THEN th.v END),
          MAX(CASE WHEN th.nk = 'organization' THEN th.v END),
          MAX(CASE WHEN th.nk = 'organisation' THEN th.v END)
        )
      ),
      ''
    ) AS p_company,
    LOWER(
      NULLIF(
        TRIM(
          COALESCE(
            MAX(CASE WHEN th.nk = 'email' THEN th.v END),
            MAX(CASE WHEN th.nk = 'emailaddress' THEN th.v END)
          )
        ),
        ''
      )
    ) AS p_email,
    NULLIF(
      TRIM(
        COALESCE(
          MAX(CASE WHEN th.nk = 'source' THEN th.v END),
          MAX(CASE WHEN th.nk = 'leadsource' THEN th.v END),
          MAX(CASE WHEN th.nk = 'referralsource' THEN th.v END),
          MAX(CASE WHEN th.nk = 'signupsource' THEN th.v END),
          MAX(CASE WHEN th.nk = 'utmsource' THEN th.v END),
          MAX(CASE WHEN th.key = '$first_source' THEN th.v END)
        )
      ),
      ''
    ) AS p_source,
    NULLIF(
      TRIM(
        COALESCE(
          MAX(CASE WHEN th.nk = 'title' THEN th.v END),
          MAX(CASE WHEN th.nk = 'jobtitle' THEN th.v END),
          MAX(CASE WHEN th.nk = 'role' THEN th.v END),
          MAX(CASE WHEN th.nk = 'position' THEN th.v END)
        )
      ),
      ''
    ) AS p_title,
    MAX(CASE WHEN th.key = '$account_id' THEN th.v END) AS p_group_account,
    MAX(CASE WHEN th.key = 'emailVerified' THEN th.v END) AS tr1,
    MAX(CASE WHEN th.key = 'phoneCountry' THEN th.v END) AS tr0,
    MAX(CASE WHEN th.key = 'phoneVerified' THEN th.v END) AS tr2,
    MAX(CASE WHEN th.key = 'productInterest' THEN th.v END) AS tr3
  FROM lr_pop AS pop
  LEFT JOIN lr_th AS th
    ON th.person_id = pop.person_id
  GROUP BY
    pop.person_id,
    pop.first_seen
), lr_pd AS (
  SELECT
    *,
    NULLIF(LOWER(SPLIT_PART(p_email, '@', 2)), '') AS p_domain
  FROM lr_prof
), lr_pw AS (
  SELECT
    *,
    COALESCE(
      p_domain IN (
        '10minutemail.com',
        '126.com',
        '163.com',
        'aim.com',
        'alice.it',
        'aliyun.com',
        'aol.com',
        'arcor.de',
        'att.net',
        'bellsouth.net',
        'bigpond.com',
        'bk.ru',
        'bol.com.br',
        'btinternet.com',
        'charter.net',
        'comcast.net',
        'cox.net',
        'daum.net',
        'earthlink.net',
        'email.com',
        'fastmail.com',
        'fastmail.fm',
        'free.fr',
        'freenet.de',
        'gmail.com',
        'gmx.at',
        'gmx.ch',
        'gmx.com',
        'gmx.de',
        'gmx.net',
        'googlemail.com',
        'guerrillamail.com',
        'hanmail.net',
        'hotmail.co.uk',
        'hotmail.com',
        'hotmail.de',
        'hotmail.es',
        'hotmail.fr',
        'hotmail.it',
        'hushmail.com',
        'icloud.com',
        'inbox.ru',
        'interia.pl',
        'juno.com',
        'laposte.net',
        'libero.it',
        'list.ru',
        'live.co.uk',
        'live.com',
        'live.fr',
        'mac.com',
        'mail.com',
        'mail.ru',
        'mailinator.com',
        'me.com',
        'msn.com',
        'naver.com',
        'ntlworld.com',
        'o2.pl',
        'onet.pl',
        'op.pl',
        'optonline.net',
        'optusnet.com.au',
        'orange.fr',
        'outlook.com',
        'outlook.de',
        'outlook.fr',
        'passport.com',
        'pm.me',
        'proton.me',
        'protonmail.com',
        'qq.com',
        'rambler.ru',
        'rediffmail.com',
        'rocketmail.com',
        'rogers.com',
        'sbcglobal.net',
        'seznam.cz',
        'sfr.fr',
        'shaw.ca',
        'sina.com',
        'sky.com',
        'sohu.com',
        'sympatico.ca',
        't-online.de',
        'talktalk.net',
        'telstra.com',
        'temp-mail.org',
        'terra.com.br',
        'tiscali.it',
        'trashmail.com',
        'tuta.io',
        'tutanota.com',
        'uol.com.br',
        'verizon.net',
        'virgilio.it',
        'virginmedia.com',
        'wanadoo.fr',
        'web.de',
        'wp.pl',
        'ya.ru',
        'yahoo.co.in',
        'yahoo.co.jp',
        'yahoo.co.uk',
        'yahoo.com',
        'yahoo.com.br',
        'yahoo.de',
        'yahoo.es',
        'yahoo.fr',
        'yahoo.it',
        'yandex.com',
        'yandex.ru',
        'yeah.net',
        'ymail.com',
        'yopmail.com',
        'zoho.com',
        'zohomail.com'
      ),
      FALSE
    ) AS p_webmail
  FROM lr_pd
), lr_person0 AS (
  SELECT
    *,
    COALESCE(
      p_group_account,
      CASE WHEN NOT p_domain IS NULL AND NOT p_webmail THEN 'domain:' || p_domain END
    ) AS p_account_id,
    COALESCE(
      NOT p_webmail
      AND (
        (
          LENGTH(LOWER(REGEXP_REPLACE(p_company, '[^A-Za-z0-9]', ''))) >= 3
          AND LOCATE(
            LOWER(REGEXP_REPLACE(p_company, '[^A-Za-z0-9]', '')),
            LOWER(REGEXP_REPLACE(SPLIT_PART(p_domain, '.', 1), '[^A-Za-z0-9]', ''))
          ) > 0
        )
        OR (
          LENGTH(LOWER(REGEXP_REPLACE(SPLIT_PART(p_domain, '.', 1), '[^A-Za-z0-9]', ''))) >= 3
          AND LOCATE(
            LOWER(REGEXP_REPLACE(SPLIT_PART(p_domain, '.', 1), '[^A-Za-z0-9]', '')),
            LOWER(REGEXP_REPLACE(p_company, '[^A-Za-z0-9]', ''))
          ) > 0
        )
      ),
      FALSE
    ) AS p_domain_matches_company
  FROM lr_pw
), lr_ath AS (
  SELECT
    account_id,
    key,
    nk,
    v,
    ROW_NUMBER() OVER (PARTITION BY account_id, key ORDER BY ts DESC, message_id DESC) AS rn
  FROM (
    SELECT
      account_id,
      key,
      LOWER(REPLACE(REPLACE(REPLACE(key, '_', ''), ' ', ''), '-', '')) AS nk,
      ts,
      message_id,
      GET_JSON_OBJECT(CONCAT('{"v":', value, '}'), '$.v') AS v
    FROM account_trait_history
    WHERE
      ts <= CAST('2026-06-01 00:00:00.000000' AS TIMESTAMP)
      AND LOWER(REPLACE(REPLACE(REPLACE(key, '_', ''), ' ', ''), '-', '')) IN ('companysize', 'employees', 'numberofemployees', 'size')
      AND account_id IN (
        SELECT
          p_account_id
        FROM lr_person0
      )
  ) AS t
), lr_acct AS (
  SELECT
    account_id,
    TRY_CAST(COALESCE(
      MAX(CASE WHEN rn = 1 AND nk = 'employees' THEN v END),
      MAX(CASE WHEN rn = 1 AND nk = 'size' THEN v END),
      MAX(CASE WHEN rn = 1 AND nk = 'companysize' THEN v END),
      MAX(CASE WHEN rn = 1 AND nk = 'numberofemployees' THEN v END)
    ) AS DOUBLE) AS a_size
  FROM lr_ath
  GROUP BY
    account_id
), lr_person AS (
  SELECT
    p.*,
    a.a_size
  FROM lr_person0 AS p
  LEFT JOIN lr_acct AS a
    ON a.account_id = p.p_account_id
), lr_ev0 AS (
  SELECT
    kp.pk,
    e.ts,
    CAST(1780272000000000 - UNIX_MICROS(e.ts) AS DOUBLE) / CAST(86400000000 AS DOUBLE) AS age_d,
    e.type AS ev_type,
    e.event AS ev_event,
    CASE
      WHEN (
        e.type = 'track' AND e.event IN ('Environment Launched')
      )
      THEN GET_JSON_OBJECT(e.properties, '$.template')
    END AS x2,
    CASE
      WHEN (
        e.type = 'track' AND e.event IN ('Environment Launched')
      )
      OR (
        e.type = 'track' AND e.event IN ('Environment Launched', 'Environment Resumed')
      )
      THEN GET_JSON_OBJECT(e.properties, '$.guests')
    END AS x3,
    CASE
      WHEN (
        e.type = 'page'
      )
      THEN COALESCE(GET_JSON_OBJECT(e.properties, '$.path'), GET_JSON_OBJECT(e.context, '$.page.path'))
    END AS x4,
    CASE
      WHEN (
        e.type = 'track' AND e.event IN ('Environment Stopped')
      )
      THEN GET_JSON_OBJECT(e.properties, '$.duration_minutes')
    END AS x5,
    CASE
      WHEN (
        e.type = 'track' AND e.event IN ('Environment Stopped')
      )
      THEN GET_JSON_OBJECT(e.properties, '$.max_duration_minutes')
    END AS x6,
    CASE
      WHEN (
        (
          e.type = 'track' AND e.event IN ('Environment Launched', 'Environment Resumed')
        )
        OR (
          e.type = 'track' AND e.event IN ('Environment Stopped')
        )
      )
      OR (
        e.type = 'track' AND e.event IN ('Environment Resumed')
      )
      THEN GET_JSON_OBJECT(e.properties, '$.environment_id')
    END AS x7
  FROM events AS e
  JOIN lr_pop AS kp
    ON kp.person_id = e.person_id
  WHERE
    e.ts <= CAST('2026-06-01 00:00:00.000000' AS TIMESTAMP)
    AND e.person_id IN (
      SELECT
        person_id
      FROM touched_people
    )
), lr_evm AS (
  SELECT
    pk,
    ts,
    COALESCE(ev_type = 'track' AND ev_event IN ('Environment Launched'), FALSE) AS m_environment_launched,
    COALESCE(
      ev_type = 'track'
      AND ev_event IN ('Environment Launched')
      AND (
        TRY_CAST(x3 AS DOUBLE) >= CAST(3 AS DOUBLE)
      ),
      FALSE
    ) AS m_ran_a_class,
    COALESCE(
      ev_type = 'page'
      AND (
        x4 IN ('/product', '/pricing')
        OR x4 LIKE '/features/%'
        OR x4 LIKE '/case-studies/%'
      ),
      FALSE
    ) AS m_evaluate_content,
    COALESCE(
      ev_type = 'page' AND (
        x4 = '/docs/getting-started' OR x4 LIKE '/trial/%'
      ),
      FALSE
    ) AS m_sample_content,
    COALESCE(
      ev_type = 'page' AND (
        x4 LIKE '/docs/api%' OR x4 LIKE '/integrations/%'
      ),
      FALSE
    ) AS m_integrate_content,
    COALESCE(
      ev_type = 'page' AND (
        x4 IN ('/docs/security', '/docs/sso', '/security')
      ),
      FALSE
    ) AS m_security_content,
    COALESCE(ev_type = 'page' AND (
      x4 LIKE '/pricing%'
    ), FALSE) AS m_pricing_page,
    COALESCE(ev_type = 'track' AND ev_event IN ('Email Clicked'), FALSE) AS m_email_click,
    COALESCE(ev_type = 'track' AND ev_event IN ('Contact Sales Requested'), FALSE) AS m_contact_sales,
    COALESCE(ev_type = 'track' AND ev_event IN ('Documentation Purchased'), FALSE) AS m_docs_purchased,
    COALESCE(ev_type = 'track' AND ev_event IN ('Training Registered'), FALSE) AS m_training_registered,
    COALESCE(ev_type = 'page' AND (
      x4 = '/pricing/enterprise'
    ), FALSE) AS m_enterprise_pricing,
    COALESCE(ev_type = 'track' AND ev_event IN ('Logged In'), FALSE) AS m_f_logins,
    COALESCE(ev_type = 'page' AND (
      x4 LIKE '/docs/api%'
    ), FALSE) AS m_f_api_pages,
    COALESCE(TRUE, FALSE) AS m_f_days_since_active,
    COALESCE(ev_type = 'page' AND (
      x4 LIKE '/blog/%' OR x4 = '/'
    ), FALSE) AS m_st0_0,
    COALESCE(ev_type = 'track' AND ev_event IN ('Signed Up', 'Environment Launched'), FALSE) AS m_st2_1,
    COALESCE(
      ev_type = 'page'
      AND (
        x4 IN ('/docs/deployment', '/pricing/enterprise', '/contact-sales')
      ),
      FALSE
    ) AS m_st5_0,
    COALESCE(
      ev_type = 'track'
      AND ev_event IN ('Environment Stopped')
      AND (
        TRY_CAST(x5 AS DOUBLE) > COALESCE(TRY_CAST(x6 AS DOUBLE), CAST(240 AS DOUBLE))
      ),
      FALSE
    ) AS m_ab_session_over_limit,
    COALESCE(
      ev_type = 'track'
      AND ev_event IN ('Environment Launched')
      AND (
        TRY_CAST(x3 AS DOUBLE) > CAST(10 AS DOUBLE)
      ),
      FALSE
    ) AS m_ab_too_many_guests,
    COALESCE(
      ev_type = 'track'
      AND ev_event IN ('Environment Launched', 'Environment Resumed')
      AND (
        ev_event = 'Environment Resumed' OR TRY_CAST(x3 AS DOUBLE) >= CAST(3 AS DOUBLE)
      ),
      FALSE
    ) AS m_ab_parallel_classes_start,
    COALESCE(ev_type = 'track' AND ev_event IN ('Environment Stopped'), FALSE) AS m_ab_parallel_classes_stop,
    COALESCE(ev_type = 'track' AND ev_event IN ('Environment Resumed'), FALSE) AS m_ab_scripted_resume,
    CASE
      WHEN x2 IN ('windows-lab', 'data-science')
      THEN CAST(6 AS DOUBLE)
      ELSE CAST(3 AS DOUBLE)
    END AS pt_environment_launched,
    x2 AS fv_templates_tried,
    TRY_CAST(x5 AS DOUBLE) AS mv_ab_session_over_limit,
    TRY_CAST(x3 AS DOUBLE) AS mv_ab_too_many_guests,
    x7 AS k_ab_parallel_classes
  FROM lr_ev0
), lr_ev AS (
  SELECT
    *,
    UNIX_MICROS(ts) AS ts_us,
    CAST(1780272000000000 - UNIX_MICROS(ts) AS DOUBLE) / CAST(86400000000 AS DOUBLE) AS age_d,
    CAST(ts AS DATE) AS day,
    k_ab_parallel_classes AS k_ab_scripted_resume
  FROM lr_evm
), lr_agg AS (
  SELECT
    pk,
    CAST(SUM(CASE WHEN m_environment_launched THEN 1 ELSE 0 END) AS BIGINT) AS r_environment_launched_n,
    CAST(SUM(CASE WHEN m_ran_a_class THEN 1 ELSE 0 END) AS BIGINT) AS r_ran_a_class_n,
    MAX(CASE WHEN m_ran_a_class THEN CAST(6 AS DOUBLE) END) AS r_ran_a_class_raw,
    MAX(
      CASE
        WHEN m_ran_a_class
        THEN CAST(6 AS DOUBLE) * POWER(CAST(0.5 AS DOUBLE), age_d / CAST(21 AS DOUBLE))
      END
    ) AS r_ran_a_class_dec,
    CAST(SUM(CASE WHEN m_evaluate_content THEN 1 ELSE 0 END) AS BIGINT) AS r_evaluate_content_n,
    CAST(SUM(CASE WHEN m_sample_content THEN 1 ELSE 0 END) AS BIGINT) AS r_sample_content_n,
    CAST(SUM(CASE WHEN m_integrate_content THEN 1 ELSE 0 END) AS BIGINT) AS r_integrate_content_n,
    CAST(SUM(CASE WHEN m_security_content THEN 1 ELSE 0 END) AS BIGINT) AS r_security_content_n,
    CAST(SUM(CASE WHEN m_pricing_page THEN 1 ELSE 0 END) AS BIGINT) AS r_pricing_page_n,
    CAST(SUM(CASE WHEN m_email_click THEN 1 ELSE 0 END) AS BIGINT) AS r_email_click_n,
    SUM(CASE WHEN m_email_click THEN CAST(2 AS DOUBLE) END) AS r_email_click_raw,
    SUM(
      CASE
        WHEN m_email_click
        THEN CAST(2 AS DOUBLE) * POWER(CAST(0.5 AS DOUBLE), age_d / CAST(14 AS DOUBLE))
      END
    ) AS r_email_click_dec,
    CAST(SUM(CASE WHEN m_contact_sales THEN 1 ELSE 0 END) AS BIGINT) AS r_contact_sales_n,
    MAX(CASE WHEN m_contact_sales THEN CAST(25 AS DOUBLE) END) AS r_contact_sales_raw,
    MAX(
      CASE
        WHEN m_contact_sales
        THEN CAST(25 AS DOUBLE) * POWER(CAST(0.5 AS DOUBLE), age_d / CAST(30 AS DOUBLE))
      END
    ) AS r_contact_sales_dec,
    CAST(SUM(CASE WHEN m_docs_purchased THEN 1 ELSE 0 END) AS BIGINT) AS r_docs_purchased_n,
    MAX(CASE WHEN m_docs_purchased THEN CAST(15 AS DOUBLE) END) AS r_docs_purchased_raw,
    MAX(
      CASE
        WHEN m_docs_purchased
        THEN CAST(15 AS DOUBLE) * POWER(CAST(0.5 AS DOUBLE), age_d / CAST(45 AS DOUBLE))
      END
    ) AS r_docs_purchased_dec,
    CAST(SUM(CASE WHEN m_training_registered THEN 1 ELSE 0 END) AS BIGINT) AS r_training_registered_n,
    MAX(CASE WHEN m_training_registered THEN CAST(12 AS DOUBLE) END) AS r_training_registered_raw,
    MAX(
      CASE
        WHEN m_training_registered
        THEN CAST(12 AS DOUBLE) * POWER(CAST(0.5 AS DOUBLE), age_d / CAST(45 AS DOUBLE))
      END
    ) AS r_training_registered_dec,
    CAST(SUM(CASE WHEN m_enterprise_pricing THEN 1 ELSE 0 END) AS BIGINT) AS r_enterprise_pricing_n,
    MAX(CASE WHEN m_enterprise_pricing THEN CAST(6 AS DOUBLE) END) AS r_enterprise_pricing_raw,
    MAX(
      CASE
        WHEN m_enterprise_pricing
        THEN CAST(6 AS DOUBLE) * POWER(CAST(0.5 AS DOUBLE), age_d / CAST(21 AS DOUBLE))
      END
    ) AS r_enterprise_pricing_dec,
    CAST(CAST(SUM(CASE WHEN m_f_logins THEN 1 ELSE 0 END) AS BIGINT) AS DOUBLE) AS f_logins,
    CAST(COUNT(DISTINCT CASE WHEN m_f_logins THEN day END) AS DOUBLE) AS f_login_days,
    CAST(CAST(SUM(CASE WHEN m_environment_launched THEN 1 ELSE 0 END) AS BIGINT) AS DOUBLE) AS f_environments,
    CAST(COUNT(DISTINCT CASE WHEN m_environment_launched THEN fv_templates_tried END) AS DOUBLE) AS f_templates_tried,
    CAST(CAST(SUM(CASE WHEN m_f_api_pages THEN 1 ELSE 0 END) AS BIGINT) AS DOUBLE) AS f_api_pages,
    CAST(CAST(SUM(CASE WHEN m_security_content THEN 1 ELSE 0 END) AS BIGINT) AS DOUBLE) AS f_security_pages,
    CAST(CAST(SUM(CASE WHEN m_pricing_page THEN 1 ELSE 0 END) AS BIGINT) AS DOUBLE) AS f_pricing_views,
    CAST(1780272000000000 - MAX(CASE WHEN m_f_days_since_active THEN ts_us END) AS DOUBLE) / CAST(86400000000 AS DOUBLE) AS f_days_since_active,
    CAST(SUM(CASE WHEN m_st0_0 AND age_d <= CAST(90 AS DOUBLE) THEN 1 ELSE 0 END) AS BIGINT) AS st0_n,
    MAX(CASE WHEN m_st0_0 AND age_d <= CAST(90 AS DOUBLE) THEN ts END) AS st0_last,
    MIN(CASE WHEN m_st0_0 AND age_d <= CAST(90 AS DOUBLE) THEN ts END) AS st0_first,
    CAST(SUM(CASE WHEN m_evaluate_content AND age_d <= CAST(90 AS DOUBLE) THEN 1 ELSE 0 END) AS BIGINT) AS st1_n,
    MAX(CASE WHEN m_evaluate_content AND age_d <= CAST(90 AS DOUBLE) THEN ts END) AS st1_last,
    MIN(CASE WHEN m_evaluate_content AND age_d <= CAST(90 AS DOUBLE) THEN ts END) AS st1_first,
    CAST(SUM(
      CASE
        WHEN (
          m_sample_content OR m_st2_1
        ) AND age_d <= CAST(90 AS DOUBLE)
        THEN 1
        ELSE 0
      END
    ) AS BIGINT) AS st2_n,
    MAX(
      CASE
        WHEN (
          m_sample_content OR m_st2_1
        ) AND age_d <= CAST(90 AS DOUBLE)
        THEN ts
      END
    ) AS st2_last,
    MIN(
      CASE
        WHEN (
          m_sample_content OR m_st2_1
        ) AND age_d <= CAST(90 AS DOUBLE)
        THEN ts
      END
    ) AS st2_first,
    CAST(SUM(CASE WHEN m_integrate_content AND age_d <= CAST(90 AS DOUBLE) THEN 1 ELSE 0 END) AS BIGINT) AS st3_n,
    MAX(CASE WHEN m_integrate_content AND age_d <= CAST(90 AS DOUBLE) THEN ts END) AS st3_last,
    MIN(CASE WHEN m_integrate_content AND age_d <= CAST(90 AS DOUBLE) THEN ts END) AS st3_first,
    CAST(SUM(CASE WHEN m_security_content AND age_d <= CAST(90 AS DOUBLE) THEN 1 ELSE 0 END) AS BIGINT) AS st4_n,
    MAX(CASE WHEN m_security_content AND age_d <= CAST(90 AS DOUBLE) THEN ts END) AS st4_last,
    MIN(CASE WHEN m_security_content AND age_d <= CAST(90 AS DOUBLE) THEN ts END) AS st4_first,
    CAST(SUM(
      CASE
        WHEN (
          m_st5_0 OR m_contact_sales
        ) AND age_d <= CAST(90 AS DOUBLE)
        THEN 1
        ELSE 0
      END
    ) AS BIGINT) AS st5_n,
    MAX(
      CASE
        WHEN (
          m_st5_0 OR m_contact_sales
        ) AND age_d <= CAST(90 AS DOUBLE)
        THEN ts
      END
    ) AS st5_last,
    MIN(
      CASE
        WHEN (
          m_st5_0 OR m_contact_sales
        ) AND age_d <= CAST(90 AS DOUBLE)
        THEN ts
      END
    ) AS st5_first,
    CAST(SUM(CASE WHEN m_ab_session_over_limit THEN 1 ELSE 0 END) AS BIGINT) AS ab_session_over_limit_n,
    MIN(CASE WHEN m_ab_session_over_limit THEN ts END) AS ab_session_over_limit_first,
    MAX(CASE WHEN m_ab_session_over_limit THEN ts END) AS ab_session_over_limit_last,
    MAX(CASE WHEN m_ab_session_over_limit THEN mv_ab_session_over_limit END) AS ab_session_over_limit_max,
    CAST(SUM(CASE WHEN m_ab_too_many_guests THEN 1 ELSE 0 END) AS BIGINT) AS ab_too_many_guests_n,
    MIN(CASE WHEN m_ab_too_many_guests THEN ts END) AS ab_too_many_guests_first,
    MAX(CASE WHEN m_ab_too_many_guests THEN ts END) AS ab_too_many_guests_last,
    MAX(CASE WHEN m_ab_too_many_guests THEN mv_ab_too_many_guests END) AS ab_too_many_guests_max
  FROM lr_ev
  GROUP BY
    pk
), lr_evs AS (
  SELECT
    pk,
    ts,
    m_environment_launched,
    m_evaluate_content,
    m_sample_content,
    m_integrate_content,
    m_security_content,
    m_pricing_page,
    m_ab_parallel_classes_start,
    m_ab_parallel_classes_stop,
    m_ab_scripted_resume,
    pt_environment_launched,
    k_ab_parallel_classes
  FROM lr_evm
  WHERE
    m_environment_launched
    OR m_evaluate_content
    OR m_sample_content
    OR m_integrate_content
    OR m_security_content
    OR m_pricing_page
    OR m_ab_parallel_classes_start
    OR m_ab_parallel_classes_stop
    OR m_ab_scripted_resume
), lr_evw AS (
  SELECT
    *,
    UNIX_MICROS(ts) AS ts_us,
    CAST(1780272000000000 - UNIX_MICROS(ts) AS DOUBLE) / CAST(86400000000 AS DOUBLE) AS age_d,
    CAST(ts AS DATE) AS day,
    k_ab_parallel_classes AS k_ab_scripted_resume
  FROM lr_evs
), lr_fq_environment_launched AS (
  SELECT
    pk,
    SUM(CASE WHEN rk <= 2 THEN pt END) AS raw,
    SUM(
      CASE
        WHEN rk <= 2
        THEN pt * POWER(CAST(0.5 AS DOUBLE), age_d / CAST(14 AS DOUBLE))
      END
    ) AS dec
  FROM (
    SELECT
      pk,
      pt_environment_launched AS pt,
      age_d,
      ROW_NUMBER() OVER (PARTITION BY pk, day ORDER BY ts DESC, pt_environment_launched DESC) AS rk
    FROM lr_evw
    WHERE
      m_environment_launched
  ) AS t
  GROUP BY
    pk
), lr_fq_evaluate_content AS (
  SELECT
    pk,
    SUM(CASE WHEN rk <= 3 THEN pt END) AS raw,
    SUM(
      CASE
        WHEN rk <= 3
        THEN pt * POWER(CAST(0.5 AS DOUBLE), age_d / CAST(21 AS DOUBLE))
      END
    ) AS dec
  FROM (
    SELECT
      pk,
      CAST(1 AS DOUBLE) AS pt,
      age_d,
      ROW_NUMBER() OVER (PARTITION BY pk, day ORDER BY ts DESC) AS rk
    FROM lr_evw
    WHERE
      m_evaluate_content
  ) AS t
  GROUP BY
    pk
), lr_fq_sample_content AS (
  SELECT
    pk,
    SUM(CASE WHEN rk <= 3 THEN pt END) AS raw,
    SUM(
      CASE
        WHEN rk <= 3
        THEN pt * POWER(CAST(0.5 AS DOUBLE), age_d / CAST(21 AS DOUBLE))
      END
    ) AS dec
  FROM (
    SELECT
      pk,
      CAST(1.5 AS DOUBLE) AS pt,
      age_d,
      ROW_NUMBER() OVER (PARTITION BY pk, day ORDER BY ts DESC) AS rk
    FROM lr_evw
    WHERE
      m_sample_content
  ) AS t
  GROUP BY
    pk
), lr_fq_integrate_content AS (
  SELECT
    pk,
    SUM(CASE WHEN rk <= 3 THEN pt END) AS raw,
    SUM(
      CASE
        WHEN rk <= 3
        THEN pt * POWER(CAST(0.5 AS DOUBLE), age_d / CAST(21 AS DOUBLE))
      END
    ) AS dec
  FROM (
    SELECT
      pk,
      CAST(2.5 AS DOUBLE) AS pt,
      age_d,
      ROW_NUMBER() OVER (PARTITION BY pk, day ORDER BY ts DESC) AS rk
    FROM lr_evw
    WHERE
      m_integrate_content
  ) AS t
  GROUP BY
    pk
), lr_fq_security_content AS (
  SELECT
    pk,
    SUM(CASE WHEN rk <= 2 THEN pt END) AS raw,
    SUM(
      CASE
        WHEN rk <= 2
        THEN pt * POWER(CAST(0.5 AS DOUBLE), age_d / CAST(30 AS DOUBLE))
      END
    ) AS dec
  FROM (
    SELECT
      pk,
      CAST(3 AS DOUBLE) AS pt,
      age_d,
      ROW_NUMBER() OVER (PARTITION BY pk, day ORDER BY ts DESC) AS rk
    FROM lr_evw
    WHERE
      m_security_content
  ) AS t
  GROUP BY
    pk
), lr_fq_pricing_page AS (
  SELECT
    pk,
    SUM(CASE WHEN rk <= 1 THEN pt END) AS raw,
    SUM(
      CASE
        WHEN rk <= 1
        THEN pt * POWER(CAST(0.5 AS DOUBLE), age_d / CAST(14 AS DOUBLE))
      END
    ) AS dec
  FROM (
    SELECT
      pk,
      CAST(4 AS DOUBLE) AS pt,
      age_d,
      ROW_NUMBER() OVER (PARTITION BY pk, day ORDER BY ts DESC) AS rk
    FROM lr_evw
    WHERE
      m_pricing_page
  ) AS t
  GROUP BY
    pk
), lr_ab_parallel_classes_iv AS (
  SELECT
    pk,
    k,
    ts AS t0,
    ts_us AS t0_us,
    lim,
    COALESCE(t1_us, 1780272000000000) AS t1_us
  FROM (
    SELECT
      pk,
      k,
      ts,
      ts_us,
      lim,
      is_stop,
      MIN(CASE WHEN is_stop = 1 THEN ts_us END) OVER (
        PARTITION BY pk, k
        ORDER BY ts_us NULLS LAST, is_stop NULLS LAST
        ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING
      ) AS t1_us
    FROM (
      SELECT
        pk,
        k_ab_parallel_classes AS k,
        ts,
        ts_us,
        CAST(NULL AS DOUBLE) AS lim,
        0 AS is_stop
      FROM lr_evw
      WHERE
        m_ab_parallel_classes_start AND NOT k_ab_parallel_classes IS NULL
      UNION ALL
      SELECT
        pk,
        k_ab_parallel_classes AS k,
        ts,
        ts_us,
        CAST(NULL AS DOUBLE) AS lim,
        1 AS is_stop
      FROM lr_evw
      WHERE
        m_ab_parallel_classes_stop AND NOT k_ab_parallel_classes IS NULL
    ) AS t
  ) AS t
  WHERE
    is_stop = 0
), lr_ab_parallel_classes_ss AS (
  SELECT
    pk,
    k,
    MIN(t0) AS t0,
    MIN(t0_us) AS t0_us,
    MAX(lim) AS lim,
    MAX(t1_us) AS t1_us
  FROM (
    SELECT
      *,
      SUM(new_s) OVER (
        PARTITION BY pk, k
        ORDER BY t0_us NULLS LAST, t1_us NULLS LAST
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      ) AS sid
    FROM (
      SELECT
        pk,
        k,
        t0,
        t0_us,
        t1_us,
        lim,
        CASE
          WHEN t0_us - LAG(t1_us) OVER (PARTITION BY pk, k ORDER BY t0_us NULLS LAST, t1_us NULLS LAST) <= 300000000
          THEN 0
          ELSE 1
        END AS new_s
      FROM lr_ab_parallel_classes_iv
    ) AS t
  ) AS t
  GROUP BY
    pk,
    k,
    sid
), lr_ab_parallel_classes AS (
  SELECT
    pk,
    open_n AS ab_parallel_classes_n,
    k AS ab_parallel_classes_key,
    CAST(1780272000000000 - t_us AS DOUBLE) / CAST(86400000000 AS DOUBLE) AS ab_parallel_classes_days_ago,
    CAST(over_us AS DOUBLE) / CAST(60000000 AS DOUBLE) AS ab_parallel_classes_minutes
  FROM (
    SELECT
      pk,
      t_us,
      k,
      open_n,
      MAX(stretch_us) OVER (PARTITION BY pk) AS over_us,
      ROW_NUMBER() OVER (PARTITION BY pk ORDER BY open_n DESC, t_us NULLS LAST, k NULLS LAST) AS rn
    FROM (
      SELECT
        pk,
        t_us,
        k,
        open_n,
        SUM(CASE WHEN open_n > 1 THEN COALESCE(t_next - t_us, 0) ELSE 0 END) OVER (PARTITION BY pk, isl) AS stretch_us
      FROM (
        SELECT
          *,
          SUM(CASE WHEN open_n > 1 THEN 0 ELSE 1 END) OVER (
            PARTITION BY pk
            ORDER BY t_us NULLS LAST, d NULLS LAST, k NULLS LAST
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
          ) AS isl
        FROM (
          SELECT
            pk,
            t_us,
            k,
            d,
            SUM(d) OVER (
              PARTITION BY pk
              ORDER BY t_us NULLS LAST, d NULLS LAST, k NULLS LAST
              ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
            ) AS open_n,
            LEAD(t_us) OVER (PARTITION BY pk ORDER BY t_us NULLS LAST, d NULLS LAST, k NULLS LAST) AS t_next
          FROM (
            SELECT
              pk,
              t0_us AS t_us,
              1 AS d,
              k
            FROM lr_ab_parallel_classes_ss
            UNION ALL
            SELECT
              pk,
              t1_us AS t_us,
              -1 AS d,
              k
            FROM lr_ab_parallel_classes_ss
          ) AS t
        ) AS t
      ) AS t
    ) AS t
  ) AS t
  WHERE
    rn = 1
    AND open_n > 1
    AND CAST(over_us AS DOUBLE) / CAST(60000000 AS DOUBLE) >= CAST(240 AS DOUBLE)
), lr_ab_scripted_resume AS (
  SELECT
    pk,
    n_gaps + 1 AS ab_scripted_resume_n,
    k AS ab_scripted_resume_key,
    mean_min AS ab_scripted_resume_mean_gap_minutes,
    cv AS ab_scripted_resume_cv,
    last_ts AS ab_scripted_resume_last
  FROM (
    SELECT
      *,
      ROW_NUMBER() OVER (PARTITION BY pk ORDER BY n_gaps DESC, k NULLS LAST) AS rn
    FROM (
      SELECT
        *,
        sd_min / NULLIF(mean_min, CAST(0 AS DOUBLE)) AS cv,
        COALESCE(
          n_gaps + 1 >= 5
          AND sd_min / NULLIF(mean_min, CAST(0 AS DOUBLE)) <= CAST(0.1 AS DOUBLE)
          AND mean_min BETWEEN CAST(15.000000000000002 AS DOUBLE) AND CAST(45 AS DOUBLE),
          FALSE
        ) AS hit
      FROM (
        SELECT
          pk,
          k,
          SUM(CASE WHEN NOT gap_us IS NULL THEN 1 ELSE 0 END) AS n_gaps,
          AVG(CAST(gap_us AS DOUBLE) / CAST(60000000 AS DOUBLE)) AS mean_min,
          STDDEV_POP(CAST(gap_us AS DOUBLE) / CAST(60000000 AS DOUBLE)) AS sd_min,
          MAX(ts) AS last_ts
        FROM (
          SELECT
            pk,
            k_ab_scripted_resume AS k,
            ts_us - LAG(ts_us) OVER (PARTITION BY pk, k_ab_scripted_resume ORDER BY ts NULLS LAST) AS gap_us,
            ts
          FROM lr_evw
          WHERE
            m_ab_scripted_resume
        ) AS t
        GROUP BY
          pk,
          k
      ) AS t
    ) AS t
    WHERE
      hit
  ) AS t
  WHERE
    rn = 1
), lr_comp AS (
  SELECT
    pop.person_id,
    p.p_account_id,
    p.p_campaign,
    p.p_company,
    p.p_domain,
    p.p_domain_matches_company,
    p.p_email,
    p.p_source,
    p.p_title,
    p.p_webmail,
    p.tr0,
    p.tr1,
    p.tr2,
    p.tr3,
    p.a_size,
    p.p_account_id AS account_id,
    CASE
      WHEN CASE
        WHEN NOT p_webmail AND NOT p_email IS NULL
        THEN CAST(10 AS DOUBLE)
        ELSE CAST(0 AS DOUBLE)
      END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_company_email_n,
    CASE
      WHEN NOT p_webmail AND NOT p_email IS NULL
      THEN CAST(10 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_company_email_raw,
    CASE
      WHEN NOT p_webmail AND NOT p_email IS NULL
      THEN CAST(10 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_company_email_dec,
    CASE
      WHEN NOT p_webmail AND NOT p_email IS NULL
      THEN CAST(10 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_company_email,
    CASE
      WHEN CASE WHEN p_webmail THEN CAST(-8 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_webmail_n,
    CASE WHEN p_webmail THEN CAST(-8 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END AS r_webmail_raw,
    CASE WHEN p_webmail THEN CAST(-8 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END AS r_webmail_dec,
    CASE WHEN p_webmail THEN CAST(-8 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END AS r_webmail,
    CASE
      WHEN CASE WHEN p_domain_matches_company THEN CAST(6 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_domain_matches_company_n,
    CASE WHEN p_domain_matches_company THEN CAST(6 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END AS r_domain_matches_company_raw,
    CASE WHEN p_domain_matches_company THEN CAST(6 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END AS r_domain_matches_company_dec,
    CASE WHEN p_domain_matches_company THEN CAST(6 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END AS r_domain_matches_company,
    CASE
      WHEN CASE
        WHEN tr0 IN ('NG', 'PK', 'BD', 'VN', 'ID')
        THEN CAST(-15 AS DOUBLE)
        ELSE CAST(0 AS DOUBLE)
      END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_risky_phone_country_n,
    CASE
      WHEN tr0 IN ('NG', 'PK', 'BD', 'VN', 'ID')
      THEN CAST(-15 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_risky_phone_country_raw,
    CASE
      WHEN tr0 IN ('NG', 'PK', 'BD', 'VN', 'ID')
      THEN CAST(-15 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_risky_phone_country_dec,
    CASE
      WHEN tr0 IN ('NG', 'PK', 'BD', 'VN', 'ID')
      THEN CAST(-15 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_risky_phone_country,
    CASE
      WHEN CASE
        WHEN COALESCE(LOWER(tr1) IN ('true', '1', 'yes'), FALSE)
        THEN CAST(3 AS DOUBLE)
        ELSE CAST(0 AS DOUBLE)
      END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_email_verified_n,
    CASE
      WHEN COALESCE(LOWER(tr1) IN ('true', '1', 'yes'), FALSE)
      THEN CAST(3 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_email_verified_raw,
    CASE
      WHEN COALESCE(LOWER(tr1) IN ('true', '1', 'yes'), FALSE)
      THEN CAST(3 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_email_verified_dec,
    CASE
      WHEN COALESCE(LOWER(tr1) IN ('true', '1', 'yes'), FALSE)
      THEN CAST(3 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_email_verified,
    CASE
      WHEN CASE
        WHEN COALESCE(LOWER(tr2) IN ('true', '1', 'yes'), FALSE)
        THEN CAST(4 AS DOUBLE)
        ELSE CAST(0 AS DOUBLE)
      END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_phone_verified_n,
    CASE
      WHEN COALESCE(LOWER(tr2) IN ('true', '1', 'yes'), FALSE)
      THEN CAST(4 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_phone_verified_raw,
    CASE
      WHEN COALESCE(LOWER(tr2) IN ('true', '1', 'yes'), FALSE)
      THEN CAST(4 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_phone_verified_dec,
    CASE
      WHEN COALESCE(LOWER(tr2) IN ('true', '1', 'yes'), FALSE)
      THEN CAST(4 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_phone_verified,
    CASE
      WHEN CASE
        WHEN p_source IN ('partner', 'webinar', 'g2')
        OR p_campaign IN ('SKILLFORGE20', 'CLOUDCAMPUS', 'WEBINAR-LABS')
        THEN CAST(8 AS DOUBLE)
        ELSE CAST(0 AS DOUBLE)
      END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_strong_referral_n,
    CASE
      WHEN p_source IN ('partner', 'webinar', 'g2')
      OR p_campaign IN ('SKILLFORGE20', 'CLOUDCAMPUS', 'WEBINAR-LABS')
      THEN CAST(8 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_strong_referral_raw,
    CASE
      WHEN p_source IN ('partner', 'webinar', 'g2')
      OR p_campaign IN ('SKILLFORGE20', 'CLOUDCAMPUS', 'WEBINAR-LABS')
      THEN CAST(8 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_strong_referral_dec,
    CASE
      WHEN p_source IN ('partner', 'webinar', 'g2')
      OR p_campaign IN ('SKILLFORGE20', 'CLOUDCAMPUS', 'WEBINAR-LABS')
      THEN CAST(8 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_strong_referral,
    CASE
      WHEN CASE
        WHEN p_source IN ('coupon-site')
        THEN CAST(-12 AS DOUBLE)
        ELSE CAST(0 AS DOUBLE)
      END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_coupon_referral_n,
    CASE
      WHEN p_source IN ('coupon-site')
      THEN CAST(-12 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_coupon_referral_raw,
    CASE
      WHEN p_source IN ('coupon-site')
      THEN CAST(-12 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_coupon_referral_dec,
    CASE
      WHEN p_source IN ('coupon-site')
      THEN CAST(-12 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_coupon_referral,
    CASE
      WHEN CASE
        WHEN LOWER(p_title) RLIKE '(^| )(cto|ceo|cfo|vp|vice president|director|head)( |$)'
        THEN CAST(10 AS DOUBLE)
        WHEN p_title ILIKE '%manager%'
        THEN CAST(6 AS DOUBLE)
        WHEN p_title IN ('Student', 'Intern')
        THEN CAST(-10 AS DOUBLE)
        ELSE CAST(0 AS DOUBLE)
      END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_title_seniority_n,
    CASE
      WHEN LOWER(p_title) RLIKE '(^| )(cto|ceo|cfo|vp|vice president|director|head)( |$)'
      THEN CAST(10 AS DOUBLE)
      WHEN p_title ILIKE '%manager%'
      THEN CAST(6 AS DOUBLE)
      WHEN p_title IN ('Student', 'Intern')
      THEN CAST(-10 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_title_seniority_raw,
    CASE
      WHEN LOWER(p_title) RLIKE '(^| )(cto|ceo|cfo|vp|vice president|director|head)( |$)'
      THEN CAST(10 AS DOUBLE)
      WHEN p_title ILIKE '%manager%'
      THEN CAST(6 AS DOUBLE)
      WHEN p_title IN ('Student', 'Intern')
      THEN CAST(-10 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_title_seniority_dec,
    CASE
      WHEN LOWER(p_title) RLIKE '(^| )(cto|ceo|cfo|vp|vice president|director|head)( |$)'
      THEN CAST(10 AS DOUBLE)
      WHEN p_title ILIKE '%manager%'
      THEN CAST(6 AS DOUBLE)
      WHEN p_title IN ('Student', 'Intern')
      THEN CAST(-10 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_title_seniority,
    CASE
      WHEN CASE
        WHEN a_size >= CAST(1000 AS DOUBLE)
        THEN CAST(10 AS DOUBLE)
        WHEN a_size >= CAST(200 AS DOUBLE)
        THEN CAST(7 AS DOUBLE)
        WHEN a_size >= CAST(50 AS DOUBLE)
        THEN CAST(4 AS DOUBLE)
        WHEN a_size < CAST(10 AS DOUBLE)
        THEN CAST(-3 AS DOUBLE)
        ELSE CAST(0 AS DOUBLE)
      END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_company_size_n,
    CASE
      WHEN a_size >= CAST(1000 AS DOUBLE)
      THEN CAST(10 AS DOUBLE)
      WHEN a_size >= CAST(200 AS DOUBLE)
      THEN CAST(7 AS DOUBLE)
      WHEN a_size >= CAST(50 AS DOUBLE)
      THEN CAST(4 AS DOUBLE)
      WHEN a_size < CAST(10 AS DOUBLE)
      THEN CAST(-3 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_company_size_raw,
    CASE
      WHEN a_size >= CAST(1000 AS DOUBLE)
      THEN CAST(10 AS DOUBLE)
      WHEN a_size >= CAST(200 AS DOUBLE)
      THEN CAST(7 AS DOUBLE)
      WHEN a_size >= CAST(50 AS DOUBLE)
      THEN CAST(4 AS DOUBLE)
      WHEN a_size < CAST(10 AS DOUBLE)
      THEN CAST(-3 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_company_size_dec,
    CASE
      WHEN a_size >= CAST(1000 AS DOUBLE)
      THEN CAST(10 AS DOUBLE)
      WHEN a_size >= CAST(200 AS DOUBLE)
      THEN CAST(7 AS DOUBLE)
      WHEN a_size >= CAST(50 AS DOUBLE)
      THEN CAST(4 AS DOUBLE)
      WHEN a_size < CAST(10 AS DOUBLE)
      THEN CAST(-3 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_company_size,
    CASE
      WHEN CASE
        WHEN COALESCE(f_logins, CAST(0 AS DOUBLE)) >= CAST(2 AS DOUBLE)
        THEN CAST(8 AS DOUBLE)
        ELSE CAST(0 AS DOUBLE)
      END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_logged_in_twice_n,
    CASE
      WHEN COALESCE(f_logins, CAST(0 AS DOUBLE)) >= CAST(2 AS DOUBLE)
      THEN CAST(8 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_logged_in_twice_raw,
    CASE
      WHEN COALESCE(f_logins, CAST(0 AS DOUBLE)) >= CAST(2 AS DOUBLE)
      THEN CAST(8 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_logged_in_twice_dec,
    CASE
      WHEN COALESCE(f_logins, CAST(0 AS DOUBLE)) >= CAST(2 AS DOUBLE)
      THEN CAST(8 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_logged_in_twice,
    CASE
      WHEN CASE
        WHEN COALESCE(f_login_days, CAST(0 AS DOUBLE)) >= CAST(5 AS DOUBLE)
        THEN CAST(6 AS DOUBLE)
        ELSE CAST(0 AS DOUBLE)
      END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_active_days_n,
    CASE
      WHEN COALESCE(f_login_days, CAST(0 AS DOUBLE)) >= CAST(5 AS DOUBLE)
      THEN CAST(6 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_active_days_raw,
    CASE
      WHEN COALESCE(f_login_days, CAST(0 AS DOUBLE)) >= CAST(5 AS DOUBLE)
      THEN CAST(6 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_active_days_dec,
    CASE
      WHEN COALESCE(f_login_days, CAST(0 AS DOUBLE)) >= CAST(5 AS DOUBLE)
      THEN CAST(6 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_active_days,
    COALESCE(g.r_environment_launched_n, 0) AS r_environment_launched_n,
    CASE
      WHEN COALESCE(g.r_environment_launched_n, 0) >= 1
      THEN COALESCE(fq_environment_launched.raw, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_environment_launched_raw,
    CASE
      WHEN COALESCE(g.r_environment_launched_n, 0) >= 1
      THEN COALESCE(fq_environment_launched.dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_environment_launched_dec,
    GREATEST(
      LEAST(
        CASE
          WHEN COALESCE(g.r_environment_launched_n, 0) >= 1
          THEN COALESCE(fq_environment_launched.dec, CAST(0 AS DOUBLE))
          ELSE CAST(0 AS DOUBLE)
        END,
        CAST(20 AS DOUBLE)
      ),
      CAST(-20 AS DOUBLE)
    ) AS r_environment_launched,
    COALESCE(g.r_ran_a_class_n, 0) AS r_ran_a_class_n,
    CASE
      WHEN COALESCE(g.r_ran_a_class_n, 0) >= 1
      THEN COALESCE(g.r_ran_a_class_raw, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_ran_a_class_raw,
    CASE
      WHEN COALESCE(g.r_ran_a_class_n, 0) >= 1
      THEN COALESCE(g.r_ran_a_class_dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_ran_a_class_dec,
    CASE
      WHEN COALESCE(g.r_ran_a_class_n, 0) >= 1
      THEN COALESCE(g.r_ran_a_class_dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_ran_a_class,
    CASE
      WHEN CASE
        WHEN COALESCE(f_templates_tried, CAST(0 AS DOUBLE)) >= CAST(3 AS DOUBLE)
        THEN CAST(4 AS DOUBLE)
        ELSE CAST(0 AS DOUBLE)
      END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_tried_templates_n,
    CASE
      WHEN COALESCE(f_templates_tried, CAST(0 AS DOUBLE)) >= CAST(3 AS DOUBLE)
      THEN CAST(4 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_tried_templates_raw,
    CASE
      WHEN COALESCE(f_templates_tried, CAST(0 AS DOUBLE)) >= CAST(3 AS DOUBLE)
      THEN CAST(4 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_tried_templates_dec,
    CASE
      WHEN COALESCE(f_templates_tried, CAST(0 AS DOUBLE)) >= CAST(3 AS DOUBLE)
      THEN CAST(4 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_tried_templates,
    COALESCE(g.r_evaluate_content_n, 0) AS r_evaluate_content_n,
    CASE
      WHEN COALESCE(g.r_evaluate_content_n, 0) >= 1
      THEN COALESCE(fq_evaluate_content.raw, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_evaluate_content_raw,
    CASE
      WHEN COALESCE(g.r_evaluate_content_n, 0) >= 1
      THEN COALESCE(fq_evaluate_content.dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_evaluate_content_dec,
    GREATEST(
      LEAST(
        CASE
          WHEN COALESCE(g.r_evaluate_content_n, 0) >= 1
          THEN COALESCE(fq_evaluate_content.dec, CAST(0 AS DOUBLE))
          ELSE CAST(0 AS DOUBLE)
        END,
        CAST(6 AS DOUBLE)
      ),
      CAST(-6 AS DOUBLE)
    ) AS r_evaluate_content,
    COALESCE(g.r_sample_content_n, 0) AS r_sample_content_n,
    CASE
      WHEN COALESCE(g.r_sample_content_n, 0) >= 1
      THEN COALESCE(fq_sample_content.raw, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_sample_content_raw,
    CASE
      WHEN COALESCE(g.r_sample_content_n, 0) >= 1
      THEN COALESCE(fq_sample_content.dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_sample_content_dec,
    GREATEST(
      LEAST(
        CASE
          WHEN COALESCE(g.r_sample_content_n, 0) >= 1
          THEN COALESCE(fq_sample_content.dec, CAST(0 AS DOUBLE))
          ELSE CAST(0 AS DOUBLE)
        END,
        CAST(6 AS DOUBLE)
      ),
      CAST(-6 AS DOUBLE)
    ) AS r_sample_content,
    COALESCE(g.r_integrate_content_n, 0) AS r_integrate_content_n,
    CASE
      WHEN COALESCE(g.r_integrate_content_n, 0) >= 1
      THEN COALESCE(fq_integrate_content.raw, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_integrate_content_raw,
    CASE
      WHEN COALESCE(g.r_integrate_content_n, 0) >= 1
      THEN COALESCE(fq_integrate_content.dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_integrate_content_dec,
    GREATEST(
      LEAST(
        CASE
          WHEN COALESCE(g.r_integrate_content_n, 0) >= 1
          THEN COALESCE(fq_integrate_content.dec, CAST(0 AS DOUBLE))
          ELSE CAST(0 AS DOUBLE)
        END,
        CAST(10 AS DOUBLE)
      ),
      CAST(-10 AS DOUBLE)
    ) AS r_integrate_content,
    COALESCE(g.r_security_content_n, 0) AS r_security_content_n,
    CASE
      WHEN COALESCE(g.r_security_content_n, 0) >= 1
      THEN COALESCE(fq_security_content.raw, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_security_content_raw,
    CASE
      WHEN COALESCE(g.r_security_content_n, 0) >= 1
      THEN COALESCE(fq_security_content.dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_security_content_dec,
    GREATEST(
      LEAST(
        CASE
          WHEN COALESCE(g.r_security_content_n, 0) >= 1
          THEN COALESCE(fq_security_content.dec, CAST(0 AS DOUBLE))
          ELSE CAST(0 AS DOUBLE)
        END,
        CAST(9 AS DOUBLE)
      ),
      CAST(-9 AS DOUBLE)
    ) AS r_security_content,
    COALESCE(g.r_pricing_page_n, 0) AS r_pricing_page_n,
    CASE
      WHEN COALESCE(g.r_pricing_page_n, 0) >= 1
      THEN COALESCE(fq_pricing_page.raw, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_pricing_page_raw,
    CASE
      WHEN COALESCE(g.r_pricing_page_n, 0) >= 1
      THEN COALESCE(fq_pricing_page.dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_pricing_page_dec,
    GREATEST(
      LEAST(
        CASE
          WHEN COALESCE(g.r_pricing_page_n, 0) >= 1
          THEN COALESCE(fq_pricing_page.dec, CAST(0 AS DOUBLE))
          ELSE CAST(0 AS DOUBLE)
        END,
        CAST(12 AS DOUBLE)
      ),
      CAST(-12 AS DOUBLE)
    ) AS r_pricing_page,
    COALESCE(g.r_email_click_n, 0) AS r_email_click_n,
    CASE
      WHEN COALESCE(g.r_email_click_n, 0) >= 1
      THEN COALESCE(g.r_email_click_raw, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_email_click_raw,
    CASE
      WHEN COALESCE(g.r_email_click_n, 0) >= 1
      THEN COALESCE(g.r_email_click_dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_email_click_dec,
    GREATEST(
      LEAST(
        CASE
          WHEN COALESCE(g.r_email_click_n, 0) >= 1
          THEN COALESCE(g.r_email_click_dec, CAST(0 AS DOUBLE))
          ELSE CAST(0 AS DOUBLE)
        END,
        CAST(6 AS DOUBLE)
      ),
      CAST(-6 AS DOUBLE)
    ) AS r_email_click,
    CASE
      WHEN CASE
        WHEN f_days_since_active > CAST(21 AS DOUBLE)
        THEN CAST(-10 AS DOUBLE)
        ELSE CAST(0 AS DOUBLE)
      END <> CAST(0 AS DOUBLE)
      THEN 1
      ELSE 0
    END AS r_gone_quiet_n,
    CASE
      WHEN f_days_since_active > CAST(21 AS DOUBLE)
      THEN CAST(-10 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_gone_quiet_raw,
    CASE
      WHEN f_days_since_active > CAST(21 AS DOUBLE)
      THEN CAST(-10 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_gone_quiet_dec,
    CASE
      WHEN f_days_since_active > CAST(21 AS DOUBLE)
      THEN CAST(-10 AS DOUBLE)
      ELSE CAST(0 AS DOUBLE)
    END AS r_gone_quiet,
    COALESCE(g.r_contact_sales_n, 0) AS r_contact_sales_n,
    CASE
      WHEN COALESCE(g.r_contact_sales_n, 0) >= 1
      THEN COALESCE(g.r_contact_sales_raw, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_contact_sales_raw,
    CASE
      WHEN COALESCE(g.r_contact_sales_n, 0) >= 1
      THEN COALESCE(g.r_contact_sales_dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_contact_sales_dec,
    CASE
      WHEN COALESCE(g.r_contact_sales_n, 0) >= 1
      THEN COALESCE(g.r_contact_sales_dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_contact_sales,
    COALESCE(g.r_docs_purchased_n, 0) AS r_docs_purchased_n,
    CASE
      WHEN COALESCE(g.r_docs_purchased_n, 0) >= 1
      THEN COALESCE(g.r_docs_purchased_raw, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_docs_purchased_raw,
    CASE
      WHEN COALESCE(g.r_docs_purchased_n, 0) >= 1
      THEN COALESCE(g.r_docs_purchased_dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_docs_purchased_dec,
    CASE
      WHEN COALESCE(g.r_docs_purchased_n, 0) >= 1
      THEN COALESCE(g.r_docs_purchased_dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_docs_purchased,
    COALESCE(g.r_training_registered_n, 0) AS r_training_registered_n,
    CASE
      WHEN COALESCE(g.r_training_registered_n, 0) >= 1
      THEN COALESCE(g.r_training_registered_raw, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_training_registered_raw,
    CASE
      WHEN COALESCE(g.r_training_registered_n, 0) >= 1
      THEN COALESCE(g.r_training_registered_dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_training_registered_dec,
    CASE
      WHEN COALESCE(g.r_training_registered_n, 0) >= 1
      THEN COALESCE(g.r_training_registered_dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_training_registered,
    COALESCE(g.r_enterprise_pricing_n, 0) AS r_enterprise_pricing_n,
    CASE
      WHEN COALESCE(g.r_enterprise_pricing_n, 0) >= 1
      THEN COALESCE(g.r_enterprise_pricing_raw, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_enterprise_pricing_raw,
    CASE
      WHEN COALESCE(g.r_enterprise_pricing_n, 0) >= 1
      THEN COALESCE(g.r_enterprise_pricing_dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_enterprise_pricing_dec,
    CASE
      WHEN COALESCE(g.r_enterprise_pricing_n, 0) >= 1
      THEN COALESCE(g.r_enterprise_pricing_dec, CAST(0 AS DOUBLE))
      ELSE CAST(0 AS DOUBLE)
    END AS r_enterprise_pricing,
    COALESCE(g.f_logins, CAST(0 AS DOUBLE)) AS f_logins,
    COALESCE(g.f_login_days, CAST(0 AS DOUBLE)) AS f_login_days,
    COALESCE(g.f_environments, CAST(0 AS DOUBLE)) AS f_environments,
    COALESCE(g.f_templates_tried, CAST(0 AS DOUBLE)) AS f_templates_tried,
    COALESCE(g.f_api_pages, CAST(0 AS DOUBLE)) AS f_api_pages,
    COALESCE(g.f_security_pages, CAST(0 AS DOUBLE)) AS f_security_pages,
    COALESCE(g.f_pricing_views, CAST(0 AS DOUBLE)) AS f_pricing_views,
    g.f_days_since_active AS f_days_since_active,
    COALESCE(g.st0_n, 0) AS st0_n,
    g.st0_last,
    g.st0_first,
    COALESCE(g.st1_n, 0) AS st1_n,
    g.st1_last,
    g.st1_first,
    COALESCE(g.st2_n, 0) AS st2_n,
    g.st2_last,
    g.st2_first,
    COALESCE(g.st3_n, 0) AS st3_n,
    g.st3_last,
    g.st3_first,
    COALESCE(g.st4_n, 0) AS st4_n,
    g.st4_last,
    g.st4_first,
    COALESCE(g.st5_n, 0) AS st5_n,
    g.st5_last,
    g.st5_first,
    COALESCE(g.ab_session_over_limit_n, 0) >= 1 AS ab_session_over_limit,
    COALESCE(g.ab_session_over_limit_n, 0) AS ab_session_over_limit_n,
    g.ab_session_over_limit_first,
    g.ab_session_over_limit_last,
    g.ab_session_over_limit_max,
    COALESCE(g.ab_too_many_guests_n, 0) >= 1 AS ab_too_many_guests,
    COALESCE(g.ab_too_many_guests_n, 0) AS ab_too_many_guests_n,
    g.ab_too_many_guests_first,
    g.ab_too_many_guests_last,
    g.ab_too_many_guests_max,
    NOT ab_parallel_classes.ab_parallel_classes_n IS NULL AS ab_parallel_classes,
    ab_parallel_classes.ab_parallel_classes_n,
    ab_parallel_classes.ab_parallel_classes_key,
    ab_parallel_classes.ab_parallel_classes_days_ago,
    ab_parallel_classes.ab_parallel_classes_minutes,
    NOT ab_scripted_resume.ab_scripted_resume_n IS NULL AS ab_scripted_resume,
    ab_scripted_resume.ab_scripted_resume_n,
    ab_scripted_resume.ab_scripted_resume_key,
    ab_scripted_resume.ab_scripted_resume_mean_gap_minutes,
    ab_scripted_resume.ab_scripted_resume_cv,
    ab_scripted_resume.ab_scripted_resume_last
  FROM lr_pop AS pop
  LEFT JOIN lr_agg AS g
    ON g.pk = pop.pk
  LEFT JOIN lr_person AS p
    ON p.person_id = pop.person_id
  LEFT JOIN lr_fq_environment_launched AS fq_environment_launched
    ON fq_environment_launched.pk = pop.pk
  LEFT JOIN lr_fq_evaluate_content AS fq_evaluate_content
    ON fq_evaluate_content.pk = pop.pk
  LEFT JOIN lr_fq_sample_content AS fq_sample_content
    ON fq_sample_content.pk = pop.pk
  LEFT JOIN lr_fq_integrate_content AS fq_integrate_content
    ON fq_integrate_content.pk = pop.pk
  LEFT JOIN lr_fq_security_content AS fq_security_content
    ON fq_security_content.pk = pop.pk
  LEFT JOIN lr_fq_pricing_page AS fq_pricing_page
    ON fq_pricing_page.pk = pop.pk
  LEFT JOIN lr_ab_parallel_classes AS ab_parallel_classes
    ON ab_parallel_classes.pk = pop.pk
  LEFT JOIN lr_ab_scripted_resume AS ab_scripted_resume
    ON ab_scripted_resume.pk = pop.pk
), lr_cat AS (
  SELECT
    *,
    CAST(FLOOR(
      (
        (
          (
            (
              (
                (
                  (
                    (
                      (
                        (
                          (
                            CAST(0 AS DOUBLE) + r_company_email
                          ) + r_webmail
                        ) + r_domain_matches_company
                      ) + r_risky_phone_country
                    ) + r_email_verified
                  ) + r_phone_verified
                ) + r_strong_referral
              ) + r_coupon_referral
            ) + r_title_seniority
          ) + r_company_size
        ) * CAST(1000000 AS DOUBLE)
      ) + CAST(0.5 AS DOUBLE)
    ) AS DOUBLE) / CAST(1000000 AS DOUBLE) AS cat_fit_raw,
    CAST(FLOOR(
      (
        GREATEST(
          LEAST(
            (
              (
                (
                  (
                    (
                      (
                        (
                          (
                            (
                              CAST(0 AS DOUBLE) + r_company_email
                            ) + r_webmail
                          ) + r_domain_matches_company
                        ) + r_risky_phone_country
                      ) + r_email_verified
                    ) + r_phone_verified
                  ) + r_strong_referral
                ) + r_coupon_referral
              ) + r_title_seniority
            ) + r_company_size,
            CAST(45 AS DOUBLE)
          ),
          CAST(-40 AS DOUBLE)
        ) * CAST(1000000 AS DOUBLE)
      ) + CAST(0.5 AS DOUBLE)
    ) AS DOUBLE) / CAST(1000000 AS DOUBLE) AS cat_fit,
    CAST(FLOOR(
      (
        (
          (
            (
              (
                (
                  (
                    (
                      (
                        (
                          (
                            (
                              (
                                CAST(0 AS DOUBLE) + r_logged_in_twice
                              ) + r_active_days
                            ) + r_environment_launched
                          ) + r_ran_a_class
                        ) + r_tried_templates
                      ) + r_evaluate_content
                    ) + r_sample_content
                  ) + r_integrate_content
                ) + r_security_content
              ) + r_pricing_page
            ) + r_email_click
          ) + r_gone_quiet
        ) * CAST(1000000 AS DOUBLE)
      ) + CAST(0.5 AS DOUBLE)
    ) AS DOUBLE) / CAST(1000000 AS DOUBLE) AS cat_engagement_raw,
    CAST(FLOOR(
      (
        LEAST(
          (
            (
              (
                (
                  (
                    (
                      (
                        (
                          (
                            (
                              (
                                CAST(0 AS DOUBLE) + r_logged_in_twice
                              ) + r_active_days
                            ) + r_environment_launched
                          ) + r_ran_a_class
                        ) + r_tried_templates
                      ) + r_evaluate_content
                    ) + r_sample_content
                  ) + r_integrate_content
                ) + r_security_content
              ) + r_pricing_page
            ) + r_email_click
          ) + r_gone_quiet,
          CAST(60 AS DOUBLE)
        ) * CAST(1000000 AS DOUBLE)
      ) + CAST(0.5 AS DOUBLE)
    ) AS DOUBLE) / CAST(1000000 AS DOUBLE) AS cat_engagement,
    CAST(FLOOR(
      (
        (
          (
            (
              (
                CAST(0 AS DOUBLE) + r_contact_sales
              ) + r_docs_purchased
            ) + r_training_registered
          ) + r_enterprise_pricing
        ) * CAST(1000000 AS DOUBLE)
      ) + CAST(0.5 AS DOUBLE)
    ) AS DOUBLE) / CAST(1000000 AS DOUBLE) AS cat_intent_raw,
    CAST(FLOOR(
      (
        LEAST(
          (
            (
              (
                CAST(0 AS DOUBLE) + r_contact_sales
              ) + r_docs_purchased
            ) + r_training_registered
          ) + r_enterprise_pricing,
          CAST(35 AS DOUBLE)
        ) * CAST(1000000 AS DOUBLE)
      ) + CAST(0.5 AS DOUBLE)
    ) AS DOUBLE) / CAST(1000000 AS DOUBLE) AS cat_intent,
    COALESCE(
      ab_session_over_limit
      OR ab_too_many_guests
      OR ab_parallel_classes
      OR ab_scripted_resume,
      FALSE
    ) AS flagged
  FROM lr_comp
), lr_tot AS (
  SELECT
    *,
    CAST(FLOOR(
      (
        GREATEST(
          LEAST(
            (
              (
                CAST(0 AS DOUBLE) + cat_fit
              ) + cat_engagement
            ) + cat_intent,
            CAST(100 AS DOUBLE)
          ),
          CAST(0 AS DOUBLE)
        ) * CAST(1000000 AS DOUBLE)
      ) + CAST(0.5 AS DOUBLE)
    ) AS DOUBLE) / CAST(1000000 AS DOUBLE) AS score
  FROM lr_cat
), lr_grade AS (
  SELECT
    *,
    COALESCE(grade IN ('1', '2'), FALSE) AS mql
  FROM (
    SELECT
      *,
      CASE
        WHEN score >= CAST(70 AS DOUBLE)
        THEN '1'
        WHEN score >= CAST(55 AS DOUBLE)
        THEN '2'
        WHEN score >= CAST(42 AS DOUBLE)
        THEN '3'
        WHEN score >= CAST(30 AS DOUBLE)
        THEN '4'
        WHEN score >= CAST(20 AS DOUBLE)
        THEN '5'
        WHEN score >= CAST(10 AS DOUBLE)
        THEN '6'
        ELSE '7'
      END AS grade,
      CASE
        WHEN st5_n >= 1
        THEN 'Deploy'
        WHEN st4_n >= 1
        THEN 'Test'
        WHEN st3_n >= 1
        THEN 'Integrate'
        WHEN st2_n >= 1
        THEN 'Sample'
        WHEN st1_n >= 1
        THEN 'Evaluate'
        WHEN st0_n >= 1
        THEN 'Recognize'
        ELSE CAST(NULL AS STRING)
      END AS stage,
      CASE
        WHEN st5_n >= 1
        THEN 6
        WHEN st4_n >= 1
        THEN 5
        WHEN st3_n >= 1
        THEN 4
        WHEN st2_n >= 1
        THEN 3
        WHEN st1_n >= 1
        THEN 2
        WHEN st0_n >= 1
        THEN 1
        ELSE 0
      END AS stage_rank,
      CASE
        WHEN st5_n >= 1
        THEN st5_n
        WHEN st4_n >= 1
        THEN st4_n
        WHEN st3_n >= 1
        THEN st3_n
        WHEN st2_n >= 1
        THEN st2_n
        WHEN st1_n >= 1
        THEN st1_n
        WHEN st0_n >= 1
        THEN st0_n
        ELSE 0
      END AS stage_n,
      CASE
        WHEN st5_n >= 1
        THEN st5_first
        WHEN st4_n >= 1
        THEN st4_first
        WHEN st3_n >= 1
        THEN st3_first
        WHEN st2_n >= 1
        THEN st2_first
        WHEN st1_n >= 1
        THEN st1_first
        WHEN st0_n >= 1
        THEN st0_first
        ELSE CAST(NULL AS TIMESTAMP)
      END AS stage_first,
      CASE
        WHEN st5_n >= 1
        THEN st5_last
        WHEN st4_n >= 1
        THEN st4_last
        WHEN st3_n >= 1
        THEN st3_last
        WHEN st2_n >= 1
        THEN st2_last
        WHEN st1_n >= 1
        THEN st1_last
        WHEN st0_n >= 1
        THEN st0_last
        ELSE CAST(NULL AS TIMESTAMP)
      END AS stage_last
    FROM lr_tot
  ) AS t
)
SELECT
  person_id,
  account_id,
  score,
  grade,
  mql,
  stage,
  stage_rank,
  flagged,
  engaged,
  '{' || '"fit":' || COALESCE(CAST(cat_fit AS STRING), 'null') || ',"engagement":' || COALESCE(CAST(cat_engagement AS STRING), 'null') || ',"intent":' || COALESCE(CAST(cat_intent AS STRING), 'null') || '}' AS categories,
  '[' || CONCAT_WS(
    ',',
    CASE WHEN seg_commercial THEN '"commercial"' END,
    CASE WHEN seg_community THEN '"community"' END,
    CASE WHEN seg_developer THEN '"developer"' END,
    CASE WHEN seg_economic_buyer THEN '"economic_buyer"' END,
    CASE WHEN seg_trainer THEN '"trainer"' END,
    CASE WHEN seg_fast_track THEN '"fast_track"' END,
    CASE WHEN seg_hot THEN '"hot"' END,
    CASE WHEN seg_rescue THEN '"rescue"' END,
    CASE WHEN seg_abuser THEN '"abuser"' END
  ) || ']' AS segments,
  '{' || CONCAT_WS(
    ',',
    CASE
      WHEN ab_session_over_limit
      THEN '"session_over_limit":' || '{' || '"count":' || COALESCE(CAST(ab_session_over_limit_n AS STRING), 'null') || ',"first":' || COALESCE(
        REGEXP_EXTRACT(TO_JSON(ARRAY(CAST(ab_session_over_limit_first AS STRING))), '^\\[(.*)\\]$', 1),
        'null'
      ) || ',"last":' || COALESCE(
        REGEXP_EXTRACT(TO_JSON(ARRAY(CAST(ab_session_over_limit_last AS STRING))), '^\\[(.*)\\]$', 1),
        'null'
      ) || ',"max":' || COALESCE(CAST(ab_session_over_limit_max AS STRING), 'null') || '}'
    END,
    CASE
      WHEN ab_too_many_guests
      THEN '"too_many_guests":' || '{' || '"count":' || COALESCE(CAST(ab_too_many_guests_n AS STRING), 'null') || ',"first":' || COALESCE(
        REGEXP_EXTRACT(TO_JSON(ARRAY(CAST(ab_too_many_guests_first AS STRING))), '^\\[(.*)\\]$', 1),
        'null'
      ) || ',"last":' || COALESCE(
        REGEXP_EXTRACT(TO_JSON(ARRAY(CAST(ab_too_many_guests_last AS STRING))), '^\\[(.*)\\]$', 1),
        'null'
      ) || ',"max":' || COALESCE(CAST(ab_too_many_guests_max AS STRING), 'null') || '}'
    END,
    CASE
      WHEN ab_parallel_classes
      THEN '"parallel_classes":' || '{' || '"max_open":' || COALESCE(CAST(ab_parallel_classes_n AS STRING), 'null') || ',"key":' || COALESCE(
        REGEXP_EXTRACT(TO_JSON(ARRAY(CAST(ab_parallel_classes_key AS STRING))), '^\\[(.*)\\]$', 1),
        'null'
      ) || ',"days_ago":' || COALESCE(CAST(ab_parallel_classes_days_ago AS STRING), 'null') || ',"minutes_over_limit":' || COALESCE(CAST(ab_parallel_classes_minutes AS STRING), 'null') || '}'
    END,
    CASE
      WHEN ab_scripted_resume
      THEN '"scripted_resume":' || '{' || '"events":' || COALESCE(CAST(ab_scripted_resume_n AS STRING), 'null') || ',"key":' || COALESCE(
        REGEXP_EXTRACT(TO_JSON(ARRAY(CAST(ab_scripted_resume_key AS STRING))), '^\\[(.*)\\]$', 1),
        'null'
      ) || ',"mean_gap_minutes":' || COALESCE(CAST(ab_scripted_resume_mean_gap_minutes AS STRING), 'null') || ',"cv":' || COALESCE(CAST(ab_scripted_resume_cv AS STRING), 'null') || ',"last":' || COALESCE(
        REGEXP_EXTRACT(TO_JSON(ARRAY(CAST(ab_scripted_resume_last AS STRING))), '^\\[(.*)\\]$', 1),
        'null'
      ) || '}'
    END
  ) || '}' AS abuse,
  '{' || CONCAT_WS(
    ',',
    CASE
      WHEN r_company_email_n > 0
      THEN '"company_email":' || '{' || '"n":' || COALESCE(CAST(r_company_email_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_company_email_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_company_email_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_company_email AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_webmail_n > 0
      THEN '"webmail":' || '{' || '"n":' || COALESCE(CAST(r_webmail_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_webmail_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_webmail_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_webmail AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_domain_matches_company_n > 0
      THEN '"domain_matches_company":' || '{' || '"n":' || COALESCE(CAST(r_domain_matches_company_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_domain_matches_company_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_domain_matches_company_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_domain_matches_company AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_risky_phone_country_n > 0
      THEN '"risky_phone_country":' || '{' || '"n":' || COALESCE(CAST(r_risky_phone_country_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_risky_phone_country_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_risky_phone_country_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_risky_phone_country AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_email_verified_n > 0
      THEN '"email_verified":' || '{' || '"n":' || COALESCE(CAST(r_email_verified_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_email_verified_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_email_verified_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_email_verified AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_phone_verified_n > 0
      THEN '"phone_verified":' || '{' || '"n":' || COALESCE(CAST(r_phone_verified_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_phone_verified_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_phone_verified_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_phone_verified AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_strong_referral_n > 0
      THEN '"strong_referral":' || '{' || '"n":' || COALESCE(CAST(r_strong_referral_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_strong_referral_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_strong_referral_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_strong_referral AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_coupon_referral_n > 0
      THEN '"coupon_referral":' || '{' || '"n":' || COALESCE(CAST(r_coupon_referral_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_coupon_referral_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_coupon_referral_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_coupon_referral AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_title_seniority_n > 0
      THEN '"title_seniority":' || '{' || '"n":' || COALESCE(CAST(r_title_seniority_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_title_seniority_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_title_seniority_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_title_seniority AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_company_size_n > 0
      THEN '"company_size":' || '{' || '"n":' || COALESCE(CAST(r_company_size_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_company_size_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_company_size_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_company_size AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_logged_in_twice_n > 0
      THEN '"logged_in_twice":' || '{' || '"n":' || COALESCE(CAST(r_logged_in_twice_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_logged_in_twice_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_logged_in_twice_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_logged_in_twice AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_active_days_n > 0
      THEN '"active_days":' || '{' || '"n":' || COALESCE(CAST(r_active_days_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_active_days_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_active_days_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_active_days AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_environment_launched_n > 0
      THEN '"environment_launched":' || '{' || '"n":' || COALESCE(CAST(r_environment_launched_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_environment_launched_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_environment_launched_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_environment_launched AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_ran_a_class_n > 0
      THEN '"ran_a_class":' || '{' || '"n":' || COALESCE(CAST(r_ran_a_class_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_ran_a_class_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_ran_a_class_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_ran_a_class AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_tried_templates_n > 0
      THEN '"tried_templates":' || '{' || '"n":' || COALESCE(CAST(r_tried_templates_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_tried_templates_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_tried_templates_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_tried_templates AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_evaluate_content_n > 0
      THEN '"evaluate_content":' || '{' || '"n":' || COALESCE(CAST(r_evaluate_content_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_evaluate_content_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_evaluate_content_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_evaluate_content AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_sample_content_n > 0
      THEN '"sample_content":' || '{' || '"n":' || COALESCE(CAST(r_sample_content_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_sample_content_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_sample_content_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_sample_content AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_integrate_content_n > 0
      THEN '"integrate_content":' || '{' || '"n":' || COALESCE(CAST(r_integrate_content_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_integrate_content_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_integrate_content_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_integrate_content AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_security_content_n > 0
      THEN '"security_content":' || '{' || '"n":' || COALESCE(CAST(r_security_content_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_security_content_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_security_content_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_security_content AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_pricing_page_n > 0
      THEN '"pricing_page":' || '{' || '"n":' || COALESCE(CAST(r_pricing_page_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_pricing_page_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_pricing_page_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_pricing_page AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_email_click_n > 0
      THEN '"email_click":' || '{' || '"n":' || COALESCE(CAST(r_email_click_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_email_click_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_email_click_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_email_click AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_gone_quiet_n > 0
      THEN '"gone_quiet":' || '{' || '"n":' || COALESCE(CAST(r_gone_quiet_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_gone_quiet_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_gone_quiet_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_gone_quiet AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_contact_sales_n > 0
      THEN '"contact_sales":' || '{' || '"n":' || COALESCE(CAST(r_contact_sales_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_contact_sales_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_contact_sales_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_contact_sales AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_docs_purchased_n > 0
      THEN '"docs_purchased":' || '{' || '"n":' || COALESCE(CAST(r_docs_purchased_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_docs_purchased_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_docs_purchased_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_docs_purchased AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_training_registered_n > 0
      THEN '"training_registered":' || '{' || '"n":' || COALESCE(CAST(r_training_registered_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_training_registered_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_training_registered_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_training_registered AS STRING), 'null') || '}'
    END,
    CASE
      WHEN r_enterprise_pricing_n > 0
      THEN '"enterprise_pricing":' || '{' || '"n":' || COALESCE(CAST(r_enterprise_pricing_n AS STRING), 'null') || ',"raw":' || COALESCE(CAST(r_enterprise_pricing_raw AS STRING), 'null') || ',"decayed":' || COALESCE(CAST(r_enterprise_pricing_dec AS STRING), 'null') || ',"points":' || COALESCE(CAST(r_enterprise_pricing AS STRING), 'null') || '}'
    END
  ) || '}' AS components,
  '{' || '"n":' || COALESCE(CAST(stage_n AS STRING), 'null') || ',"first":' || COALESCE(
    REGEXP_EXTRACT(TO_JSON(ARRAY(CAST(stage_first AS STRING))), '^\\[(.*)\\]$', 1),
    'null'
  ) || ',"last":' || COALESCE(
    REGEXP_EXTRACT(TO_JSON(ARRAY(CAST(stage_last AS STRING))), '^\\[(.*)\\]$', 1),
    'null'
  ) || '}' AS stage_evidence
FROM (
  SELECT
    *,
    COALESCE(NOT p_webmail AND NOT p_company IS NULL, FALSE) AS seg_commercial,
    COALESCE(p_webmail OR p_company IS NULL, FALSE) AS seg_community,
    COALESCE(
      LOWER(COALESCE(p_title, '')) RLIKE 'engineer|developer|architect|devops'
      OR COALESCE(f_api_pages, CAST(0 AS DOUBLE)) >= CAST(2 AS DOUBLE),
      FALSE
    ) AS seg_developer,
    COALESCE(
      r_title_seniority >= CAST(10 AS DOUBLE)
      OR COALESCE(f_pricing_views, CAST(0 AS DOUBLE)) >= CAST(2 AS DOUBLE),
      FALSE
    ) AS seg_economic_buyer,
    COALESCE(tr3 = 'training' OR p_title ILIKE '%train%' OR p_title ILIKE '%instructor%', FALSE) AS seg_trainer,
    COALESCE(cat_intent > CAST(0 AS DOUBLE), FALSE) AS seg_fast_track,
    COALESCE(mql AND stage_rank >= CAST(4 AS DOUBLE) AND NOT flagged, FALSE) AS seg_hot,
    COALESCE(grade IN ('5', '6', '7') AND cat_engagement >= CAST(30 AS DOUBLE), FALSE) AS seg_rescue,
    COALESCE(flagged, FALSE) AS seg_abuser,
    COALESCE(cat_engagement >= CAST(10 AS DOUBLE), FALSE) AS engaged
  FROM lr_grade
) AS q;
